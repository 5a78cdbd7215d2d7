"""moto's server, with one fix for IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``).

AWS serves STS AssumeRoleWithWebIdentity without a signature: the web identity token is the
credential. moto 5.2 checks a signature on every call once enforcement is on, and an unsigned
call then crashes it with a 500. This lets exactly that one action through unsigned, as AWS does,
so the plugin's real, unsigned STS call can be tested with IAM enforcement on. Same arguments as
``moto_server``.
"""

import sys

from moto.core.authorization import ActionAuthenticatorMixin
from moto.server import main

UNSIGNED_ACTIONS = {"AssumeRoleWithWebIdentity"}
_checked = ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate_and_authorize_action(self, iam_request_cls, resource="*"):
    if "Authorization" not in self.headers and self._get_action() in UNSIGNED_ACTIONS:
        return
    return _checked(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action

if __name__ == "__main__":
    main(sys.argv[1:])
