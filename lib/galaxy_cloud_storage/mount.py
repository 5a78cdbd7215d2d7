"""Puts the plugin's routes into an unmodified Galaxy 26.1 (invariant 1 (docs/design.rst): Galaxy's files untouched).

Galaxy has no plugin hook for API routers; its one injection point is the ``init_fast_app``
callable that builds the FastAPI app. Three ways in, one function behind them (``mount``):

- ``factory``: drop-in for ``galaxy.webapps.galaxy.fast_factory:factory`` (uvicorn, gunicorn);
- ``galaxy_cloud_storage.gunicorn_config``: for stock gravity, which hard-codes Galaxy's factory;
- ``init_fast_app``: for Galaxy's test driver (class attribute of an integration test case).
"""

import logging
import time

from fastapi import FastAPI
from galaxy.schema.schema import MessageExceptionModel
from galaxy.webapps.base.api import build_route_name_index
from galaxy.webapps.galaxy.fast_app import initialize_fast_app
from galaxy.webapps.openapi.utils import get_openapi
from starlette.routing import Mount

from . import __version__
from .api import job_router, LimitedBodyRoute, method_not_allowed_routes, router, TAG_METADATA
from .authz.delegation import CredentialBroker
from .authz.manager import CloudAuthzManager
from .config import config_file_path, load_config
from .database import ensure_database
from .jobs import forget_credentials_of_ended_jobs
from .manager import CloudManager
from .tickets import JobTickets

log = logging.getLogger(__name__)

# As Galaxy's include_all_package_routers declares them, so the OpenAPI error shapes match.
ERROR_RESPONSES: dict = {
    "4XX": {"description": "Request Error", "model": MessageExceptionModel},
    "5XX": {"description": "Server Error", "model": MessageExceptionModel},
}


def galaxy_api_app(asgi_app: FastAPI, gx_app) -> FastAPI:
    """The FastAPI app holding Galaxy's API routes (inside the parent app under a URL prefix)."""
    prefix = gx_app.config.galaxy_url_prefix
    if prefix and prefix != "/":
        for route in asgi_app.routes:
            if isinstance(route, Mount) and route.path == prefix.rstrip("/") and isinstance(route.app, FastAPI):
                return route.app
    return asgi_app


def _insert_before_catch_all(app: FastAPI) -> list:
    routes = app.router.routes
    before = len(routes)
    app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(job_router, responses=ERROR_RESPONSES)
    added = routes[before:]
    del routes[before:]
    for route in added:
        route.tags = list(dict.fromkeys(route.tags))  # the router's tags get added twice
    added += method_not_allowed_routes(added)
    # Galaxy mounts its legacy WSGI app at "/" last; a route after it is never reached.
    catch_all = next((i for i, r in enumerate(routes) if isinstance(r, Mount) and r.path == ""), len(routes))
    routes[catch_all:catch_all] = added
    return added


def _extend_openapi(app: FastAPI, added: list) -> None:
    """Merge just the plugin's paths into the schema Galaxy built eagerly (rebuilding it all
    would add 15-20 s to start-up)."""
    if app.openapi_schema is None:
        return  # nothing cached: FastAPI builds it from all routes, ours included, when asked
    ours = get_openapi(title=app.title, version=__version__, routes=added, tags=[TAG_METADATA])
    schema = app.openapi_schema
    schema["paths"].update(ours["paths"])
    components = schema.setdefault("components", {})
    for kind, entries in ours.get("components", {}).items():
        components.setdefault(kind, {}).update(entries)
    tags = schema.setdefault("tags", [])
    if not any(tag.get("name") == TAG_METADATA["name"] for tag in tags):
        tags.append(TAG_METADATA)


def mount(asgi_app: FastAPI, gx_app) -> FastAPI:
    """Add the plugin to the ASGI app that Galaxy built for ``gx_app``; returns ``asgi_app``."""
    app = galaxy_api_app(asgi_app, gx_app)
    if getattr(app.state, "galaxy_cloud_storage", False):
        return asgi_app
    started = time.perf_counter()
    config = load_config(config_file_path(gx_app.config))
    ensure_database(gx_app.model.engine, auto_migrate=bool(gx_app.config.database_auto_migrate))
    LimitedBodyRoute.max_request_bytes = config.max_request_bytes
    authz_manager = CloudAuthzManager(config, gx_app.vault)
    gx_app[CloudAuthzManager] = authz_manager
    broker = CredentialBroker(gx_app, config, authz_manager)
    gx_app[CloudManager] = CloudManager(gx_app, authz_manager, broker, config)
    gx_app[JobTickets] = JobTickets(gx_app)
    forget_credentials_of_ended_jobs(gx_app)  # a user deletes a waiting job in the web process
    added = _insert_before_catch_all(app)
    app.state.route_name_index = build_route_name_index(app)
    _extend_openapi(app, added)
    app.state.galaxy_cloud_storage = True
    log.info(
        "galaxy-cloud-storage %s mounted %d routes in %.3f s (providers: %s; config: %s)",
        __version__,
        len(added),
        time.perf_counter() - started,
        ", ".join(config.enabled_providers),
        config.source or "defaults",
    )
    return asgi_app


def init_fast_app(gx_wsgi_webapp, gx_app) -> FastAPI:
    """Galaxy's ``initialize_fast_app`` followed by the plugin's routes."""
    return mount(initialize_fast_app(gx_wsgi_webapp, gx_app), gx_app)


def factory() -> FastAPI:
    """``galaxy.webapps.galaxy.fast_factory:factory`` with the plugin mounted (uvicorn --factory)."""
    from galaxy.main_config import DEFAULT_CONFIG_SECTION, WebappConfigResolver, WebappSetupProps
    from galaxy.webapps.galaxy.fast_factory import build_galaxy_web_app

    props = WebappSetupProps(
        app_name="galaxy",
        default_section_name=DEFAULT_CONFIG_SECTION,
        env_config_file="GALAXY_CONFIG_FILE",
        env_config_section="GALAXY_CONFIG_SECTION",
        check_galaxy_root=True,
    )
    config = WebappConfigResolver(props).resolve_config()
    web_app = build_galaxy_web_app(
        global_conf=config.global_conf,
        load_app_kwds=config.load_app_kwds,
        wsgi_preflight=config.wsgi_preflight,
        init_fast_app=init_fast_app,
    )
    return web_app.asgi_app
