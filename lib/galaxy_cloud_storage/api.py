"""The plugin's API routes, in Galaxy's style: a thin router, the logic in the managers."""

import json
import logging
from typing import Annotated, Callable, Literal, Optional, Union

from fastapi import Body, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from galaxy import exceptions
from galaxy.exceptions.utils import api_error_to_dict
from galaxy.managers.context import ProvidesUserContext
from galaxy.webapps.galaxy.api import depends, DependsOnTrans, DependsOnUser, Router

from .authz.manager import CloudAuthzManager
from .contracts import JOB_CREDENTIALS
from .manager import CloudManager
from .providers.storage import MAX_PAGE_SIZE
from .schema import (
    BucketName,
    CloudAuthzListResponse,
    CloudAuthzResponse,
    CloudBucket,
    CloudDatasetSummary,
    CloudObjectListing,
    CloudStorageGetPayload,
    CloudStorageGetPlan,
    CloudStorageSendPayload,
    CloudStorageSendPlan,
    CloudStorageSendResponse,
    CreateCloudAuthzPayload,
    DecodedDatabaseIdField,
    JobTicketPayload,
    UpdateCloudAuthzPayload,
)
from .tickets import JobTickets

log = logging.getLogger(__name__)

TAG = "cloud"
TAG_METADATA = {
    "name": TAG,
    "description": "Copy objects between cloud buckets (Amazon S3, Azure Blob Storage, Google Cloud Storage, "
    "OpenStack Swift) and Galaxy histories, with short-lived credentials that Galaxy obtains from your "
    "OpenID Connect login through a cloud authorization (`/api/cloud/authz`).",
}

# Every route needs a logged-in user (API key, session or OIDC bearer token)...
router = Router(tags=[TAG], dependencies=[DependsOnUser])
# ...but the one that transfer jobs call, which a job's one-time ticket authorizes (tickets.py).
job_router = Router(tags=[TAG])


# Methods a route may be asked with; OPTIONS stays Galaxy's (its CORS preflight answers it).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "TRACE", "QUERY")


class MethodNotAllowed(exceptions.MessageException):
    status_code = 405
    err_code = exceptions.error_codes.error_codes_by_name["USER_REQUEST_INVALID_PARAMETER"]


class PayloadTooLarge(exceptions.MessageException):
    status_code = 413
    err_code = exceptions.error_codes.error_codes_by_name["USER_REQUEST_INVALID_PARAMETER"]


def parsed_json_body(body: bytes):
    """The body as JSON, or Galaxy's 400 saying why it cannot be read. FastAPI answers bodies it
    cannot decode (not UTF-8, nested too deeply, integers of more than 4,300 digits) with a bare
    ``{"detail": ...}``, outside Galaxy's error shape; syntax errors it reports itself, in Galaxy's
    shape, with their position."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise exceptions.RequestParameterInvalidException(
            f"The request body is not valid UTF-8 (at byte {e.start})."
        ) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None  # FastAPI parses it again and says where
    except RecursionError:
        raise exceptions.RequestParameterInvalidException("The request body is nested too deeply to be read.") from None
    except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise exceptions.RequestParameterInvalidException(f"The request body cannot be read as JSON: {e}.") from e


class LimitedBodyRoute(APIRoute):
    """Refuses a request body above the admin's ``max_request_bytes`` before it is parsed, and one
    that cannot be decoded with Galaxy's error shape."""

    max_request_bytes = 1024 * 1024  # set from the admin's config when the plugin is mounted

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def limited_handler(request: Request):
            limit = LimitedBodyRoute.max_request_bytes
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"Request body larger than {limit} bytes.")
            if request.method in ("POST", "PUT", "PATCH"):
                received = bytearray()
                async for chunk in request.stream():
                    received += chunk
                    if len(received) > limit:
                        raise PayloadTooLarge(f"Request body larger than {limit} bytes.")
                # Starlette keeps a read body (and its JSON) here; FastAPI's handler then takes them
                # from memory. Request has no public setter for either.
                request._body = bytes(received)
                if "json" in request.headers.get("content-type", ""):
                    parsed = parsed_json_body(request._body)
                    if parsed is not None:
                        request._json = parsed
            return await handler(request)

        return limited_handler


def method_not_allowed_routes(routes: list) -> list[APIRoute]:
    """A 405 with an ``Allow`` header for each method a path of ``routes`` does not take. Without
    them Galaxy's legacy catch-all (mounted at "/") answers such a request with an HTML 404."""
    allowed: dict[str, set[str]] = {}
    for route in routes:
        allowed.setdefault(route.path, set()).update(route.methods)
    refusals = []
    for path, methods in allowed.items():
        if "GET" in methods:
            methods.add("HEAD")
        allow = ", ".join(sorted(methods))

        def refuse(request: Request, allow: str = allow) -> JSONResponse:
            # Galaxy's error shape; its exception handler could not add the Allow header.
            error = MethodNotAllowed(f"{request.method} is not a method of {request.url.path}; it takes {allow}.")
            return JSONResponse(
                api_error_to_dict(exception=error), status_code=error.status_code, headers={"Allow": allow}
            )

        others = [method for method in HTTP_METHODS if method not in methods]
        refusals.append(APIRoute(path, refuse, methods=others, include_in_schema=False))
    return refusals


AuthzIdPathParam = Annotated[
    DecodedDatabaseIdField,
    Path(..., title="Authorization ID", description="The encoded id of one of your cloud authorizations."),
]


@router.cbv
class FastAPICloudAuthz:
    manager: CloudAuthzManager = depends(CloudAuthzManager)

    @router.get(
        "/api/cloud/authz",
        summary="List your cloud authorizations.",
        response_description="Your cloud authorizations; secret config fields are shown as `********`.",
    )
    def index(self, trans: ProvidesUserContext = DependsOnTrans) -> CloudAuthzListResponse:
        return [self.manager.serialize(authz) for authz in self.manager.index(trans)]

    @router.post(
        "/api/cloud/authz",
        summary="Authorize Galaxy to reach a cloud on your behalf.",
        response_description="The new authorization; use its `id` as `authz_id` in get and send.",
        route_class_override=LimitedBodyRoute,
    )
    def create(
        self,
        trans: ProvidesUserContext = DependsOnTrans,
        payload: CreateCloudAuthzPayload = Body(...),
    ) -> CloudAuthzResponse:
        """Creates a cloud authorization: how Galaxy turns your OpenID Connect login into short-lived
        credentials for one cloud (AWS STS web identity, an Azure federated credential, GCP workload
        identity federation, Keystone federation). A secret-bearing config is accepted only where the
        admin allows it, and is kept in Galaxy's vault, never shown again."""
        return self.manager.serialize(self.manager.create(trans, payload))

    @router.get(
        "/api/cloud/authz/{authz_id}",
        summary="Show one of your cloud authorizations.",
    )
    def show(self, authz_id: AuthzIdPathParam, trans: ProvidesUserContext = DependsOnTrans) -> CloudAuthzResponse:
        return self.manager.serialize(self.manager.get_owned(trans, authz_id))

    @router.put(
        "/api/cloud/authz/{authz_id}",
        summary="Change one of your cloud authorizations.",
        route_class_override=LimitedBodyRoute,
    )
    def update(
        self,
        authz_id: AuthzIdPathParam,
        trans: ProvidesUserContext = DependsOnTrans,
        payload: UpdateCloudAuthzPayload = Body(...),
    ) -> CloudAuthzResponse:
        """Updates the description, the identity, or the whole config (validated as on create)."""
        return self.manager.serialize(self.manager.update(trans, authz_id, payload))

    @router.delete(
        "/api/cloud/authz/{authz_id}",
        summary="Delete one of your cloud authorizations.",
        response_description="The deleted authorization, as it was.",
    )
    def delete(self, authz_id: AuthzIdPathParam, trans: ProvidesUserContext = DependsOnTrans) -> CloudAuthzResponse:
        """Deletes the authorization and any secret of it kept in Galaxy's vault."""
        authz = self.manager.get_owned(trans, authz_id)
        deleted = self.manager.serialize(authz)
        self.manager.delete(trans, authz)
        return deleted


AuthzIdQueryParam = Annotated[
    DecodedDatabaseIdField,
    Query(..., title="Authorization ID", description="The encoded id of one of your cloud authorizations."),
]
BucketQueryParam = Annotated[BucketName, Query(..., description="The bucket (Azure, Swift: container).")]
PrefixQueryParam = Annotated[
    str, Query(max_length=1024, description="Only keys that start with this, e.g. `runs/run-7/` for a folder.")
]
DelimiterQueryParam = Annotated[
    Optional[Literal["/"]],
    Query(description="`/` lists one folder level (its sub-folders in `folders`); left out, everything below."),
]
LimitQueryParam = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Most objects and folders in one page.")]
PageTokenQueryParam = Annotated[
    Optional[str],
    Query(max_length=4096, description="The previous page's `next_page_token` (the same bucket, prefix, delimiter)."),
]


@router.cbv
class FastAPICloudStorage:
    manager: CloudManager = depends(CloudManager)

    @router.get(
        "/api/cloud/storage/buckets",
        summary="List the buckets (containers) one of your cloud authorizations can see.",
        response_description="Each bucket's name, and when it was created where the cloud says (S3, GCS).",
    )
    def buckets(self, authz_id: AuthzIdQueryParam, trans: ProvidesUserContext = DependsOnTrans) -> list[CloudBucket]:
        """403 where the authorization may not list buckets (a role scoped to one bucket, say): such a
        bucket can still be named in the object listing, get and send."""
        return self.manager.buckets(trans, authz_id)

    @router.get(
        "/api/cloud/storage/objects",
        summary="List a bucket's objects and folders, one page at a time.",
        response_description="One page, in the cloud's order; `next_page_token` is null on the last one.",
    )
    def objects(
        self,
        authz_id: AuthzIdQueryParam,
        bucket: BucketQueryParam,
        prefix: PrefixQueryParam = "",
        delimiter: DelimiterQueryParam = None,
        limit: LimitQueryParam = 100,
        page_token: PageTokenQueryParam = None,
        trans: ProvidesUserContext = DependsOnTrans,
    ) -> CloudObjectListing:
        """Each page is one listing call to the cloud, whatever its position (the token carries the
        cloud's own continuation); walking every page gives every key once."""
        return self.manager.objects(trans, authz_id, bucket, prefix, delimiter, limit, page_token)

    @router.post(
        "/api/cloud/storage/get",
        summary="Copy objects, or a folder, from a cloud bucket into a history.",
        response_description="One new dataset per object, in the order given (a collection's element order), all "
        "made by one job; with `dry_run`, the plan.",
        route_class_override=LimitedBodyRoute,
        response_model_exclude_none=True,
    )
    def get(
        self,
        trans: ProvidesUserContext = DependsOnTrans,
        payload: CloudStorageGetPayload = Body(...),
    ) -> Union[list[CloudDatasetSummary], CloudStorageGetPlan]:
        """Checks the history, the authorization, the bucket and every object first: a request that
        fails queues no job and creates no dataset. Then one job copies all objects, with
        credentials minted when it runs. Follow it in `/api/jobs/{job_id}`; each dataset's `id` works
        with `/api/datasets/{id}`. With `collection`, the datasets are the elements of one new
        collection (`collection_id`)."""
        return self.manager.get(trans, payload)

    @router.post(
        "/api/cloud/storage/send",
        summary="Copy datasets and collections of a history into a cloud bucket.",
        response_description="Which datasets were queued for sending, under which object names, by which job; "
        "with `dry_run`, the plan.",
        route_class_override=LimitedBodyRoute,
    )
    def send(
        self,
        trans: ProvidesUserContext = DependsOnTrans,
        payload: CloudStorageSendPayload = Body(...),
    ) -> Union[CloudStorageSendResponse, CloudStorageSendPlan]:
        """Sends the given datasets (or all of the history's) as objects named after them (spaces as
        `_`), and each given collection's datasets under a folder of its name, all after
        `key_prefix`. Datasets that are not `ok` or are deleted are reported in
        `failed_dataset_labels`."""
        return self.manager.send(trans, payload)


JobIdPathParam = Annotated[
    DecodedDatabaseIdField,
    Path(..., title="Job ID", description="The encoded id of the transfer job redeeming its ticket."),
]


@job_router.cbv
class FastAPICloudJobCredentials:
    tickets: JobTickets = depends(JobTickets)

    @job_router.post(
        "/api/cloud/storage/jobs/{job_id}/credentials",
        summary="Redeem a transfer job's one-time ticket for its cloud credentials (used by the job itself).",
        response_description="The job's credentials, or why there are none (`kind`: `delegation` or `failure`).",
        route_class_override=LimitedBodyRoute,
    )
    def redeem(self, job_id: JobIdPathParam, payload: JobTicketPayload = Body(...)) -> JSONResponse:
        """A transfer job calls this as it starts, wherever its runner put it, with the ticket the
        job handler wrote into its directory: the credentials are minted now, not when the job was
        queued. A ticket works once, for its own job, while the job has not ended (otherwise 403)."""
        minted = self.tickets.redeem(job_id, payload.ticket)
        # never cached, never kept by a proxy
        return JSONResponse(JOB_CREDENTIALS.dump_python(minted, mode="json"), headers={"Cache-Control": "no-store"})
