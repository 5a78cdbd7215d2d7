"""keystone-manage db_sync, fernet_setup, credential_setup and bootstrap in one process (runs in the venv).

Usage: python setup_keystone.py KEYSTONE_CONF KEYSTONE_URL ADMIN_PASSWORD REGION
"""

import os
import sys

from keystone.cmd import cli


def main(conf, url, password, region):
    ids = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    for args in (
        ["db_sync"],
        ["fernet_setup", *ids],
        ["credential_setup", *ids],
        ["bootstrap", "--bootstrap-password", password, "--bootstrap-region-id", region,
         "--bootstrap-admin-url", f"{url}/v3", "--bootstrap-internal-url", f"{url}/v3",
         "--bootstrap-public-url", f"{url}/v3"],
    ):  # fmt: skip
        cli.CONF.clear()  # forget the previous command's parsed arguments (oslo.config)
        cli.main(argv=["keystone-manage", "--config-file", conf, *args])


if __name__ == "__main__":
    main(*sys.argv[1:])
