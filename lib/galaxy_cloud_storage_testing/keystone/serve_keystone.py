"""Serve Keystone's WSGI app on 127.0.0.1:<port> with werkzeug's threaded server (runs in the venv).

Usage: python serve_keystone.py PORT [--oidc-jwks JWKS_FILE ISSUER AUDIENCE]
                                     [--oidc-introspection URL CLIENT_ID CLIENT_SECRET ISSUER]
                                     [--record PATH]
The config file comes from OS_KEYSTONE_CONFIG_FILES (read by keystone.server.wsgi). With an --oidc
option the app is wrapped in oidc_middleware.OidcBearerMiddleware (what mod_auth_openidc does).
"""

import argparse
import logging
import sys

from werkzeug.serving import make_server


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--oidc-jwks", nargs=3, metavar=("JWKS_FILE", "ISSUER", "AUDIENCE"))
    parser.add_argument("--oidc-introspection", nargs=4, metavar=("URL", "CLIENT_ID", "CLIENT_SECRET", "ISSUER"))
    parser.add_argument("--record")
    args = parser.parse_args(argv[1:])
    # keystone's configure() parses sys.argv (oslo.config): leave it only the program name.
    sys.argv = sys.argv[:1]
    from keystone.server import wsgi

    app = wsgi.initialize_public_application()
    if args.oidc_jwks or args.oidc_introspection:
        import oidc_middleware

        if args.oidc_jwks:
            jwks, issuer, audience = args.oidc_jwks
            validator = oidc_middleware.JwksValidator(jwks, issuer=issuer, audience=audience)
        else:
            validator = oidc_middleware.IntrospectionValidator(*args.oidc_introspection)
        app = oidc_middleware.OidcBearerMiddleware(app, validator, record=args.record)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"keystone listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
