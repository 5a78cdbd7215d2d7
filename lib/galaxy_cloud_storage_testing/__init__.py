"""Local stand-ins for the services the plugin talks to, for the demo, the tests and the bench.

Each module starts one real server (or a faithful stand-in for a service that cannot run locally)
on 127.0.0.1 as a subprocess and says which service it plays: moto (S3, STS, IAM), Azurite and a
Microsoft Entra token endpoint, fake-gcs-server with Cloud Storage's IAM front and Google's token
endpoints, a Swift cluster with or without a real Keystone, an OpenID provider, a local CA, a TCP
relay to cut connections, and Galaxy itself. ``local_clouds`` puts each cloud behind one interface.

Not imported by the plugin: it needs the ``[test]`` extra, the project's ``node/`` (npm) and the
Swift virtualenv that ``scripts/bootstrap.sh`` prepares.
"""

import os

#: the repository this package runs from (an editable install: ``lib/`` is inside it)
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the npm project of the OpenID provider and Azurite (``npm ci --prefix node``)
NODE_DIR = os.environ.get("GALAXY_CLOUD_NODE_DIR") or os.path.join(REPOSITORY, "node")


def serve_until_interrupted(server, announcement: str) -> None:
    """The end of a server module's ``main``: say where it listens (for the person or log reading
    it) and serve until interrupted."""
    print(announcement, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
