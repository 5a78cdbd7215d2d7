"""Gunicorn config module for stock gravity deployments.

gravity starts ``gunicorn 'galaxy.webapps.galaxy.fast_factory:factory()' --config
python:galaxy.web_stack.gunicorn_config ...``; a later ``--config`` in gravity's ``extra_args``
replaces Galaxy's module, so this one re-exports all of Galaxy's hooks and adds one:
``post_worker_init`` mounts the plugin into the app each worker loaded.
"""

from galaxy.web_stack import gunicorn_config as _galaxy_gunicorn_config
from galaxy.web_stack.gunicorn_config import *  # noqa: F401,F403  (Galaxy's hooks stay in force)


def post_worker_init(worker):
    galaxy_hook = getattr(_galaxy_gunicorn_config, "post_worker_init", None)
    if galaxy_hook is not None:
        galaxy_hook(worker)
    import galaxy.app

    from galaxy_cloud_storage.mount import mount

    mount(worker.wsgi, galaxy.app.app)
