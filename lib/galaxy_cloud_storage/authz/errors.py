"""Errors of credential delegation, shared by every cloud's token exchange."""

from galaxy import exceptions


class ReauthenticationRequired(exceptions.AuthenticationFailed):
    """The user's OIDC login expired, was revoked or was refused by the cloud, and could not be
    renewed (401): the message names what to log in with again."""
