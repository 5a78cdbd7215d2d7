"""Galaxy reads the OIDC configuration that the admin sample documents and the tests and the demo
write (galaxy_cloud_storage_testing/oidc_provider.py): its generic ``oidc`` backend, with what the plugin relies on."""

import os
import re
from types import SimpleNamespace

from galaxy.authnz.managers import AuthnzManager

from galaxy_cloud_storage_testing import oidc_provider

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "config_samples", "oidc_backends_config.xml.sample")


def galaxy_reads(oidc_config: str, backends: str) -> AuthnzManager:
    app = SimpleNamespace(
        config=SimpleNamespace(
            oidc={}, oidc_auth_pipeline=None, oidc_auth_pipeline_extra=None, fixed_delegated_auth=False
        )
    )
    return AuthnzManager(app, oidc_config, backends)


def test_sample_is_galaxys_format_with_the_oidc_backend(tmp_path):
    with open(SAMPLE) as fh:
        sample = fh.read()
    # The oidc_config.xml that the sample's comment shows, as the admin would copy it.
    shown = re.search(r"^ {4}<\?xml.*?^ {4}</OIDC>$", sample, re.S | re.M).group(0)
    oidc_config = tmp_path / "oidc_config.xml"
    oidc_config.write_text("\n".join(line[4:] for line in shown.splitlines()))

    manager = galaxy_reads(str(oidc_config), SAMPLE)

    assert manager.oidc_config["GET_ALL_EXTRA_DATA"] is True  # or Galaxy never refreshes
    backend = manager.oidc_backends_config["oidc"]
    assert backend["redirect_uri"].endswith("/authnz/oidc/callback")
    assert {"client_id", "client_secret", "oidc_endpoint", "label"} <= set(backend)


def test_what_the_tests_and_the_demo_write(tmp_path):
    settings = oidc_provider.galaxy_oidc_config(str(tmp_path), "http://127.0.0.1:8080", "http://127.0.0.1:9400")

    manager = galaxy_reads(settings["oidc_config_file"], settings["oidc_backends_config_file"])

    assert settings["enable_oidc"] is True
    assert manager.oidc_config["GET_ALL_EXTRA_DATA"] is True
    assert manager.oidc_backends_config["oidc"] == {
        "client_id": oidc_provider.CLIENT_ID,
        "client_secret": oidc_provider.CLIENT_SECRET,
        "redirect_uri": "http://127.0.0.1:8080/authnz/oidc/callback",
        "oidc_endpoint": "http://127.0.0.1:9400",
        "label": oidc_provider.LABEL,
        "enable_idp_logout": False,
        "require_user_activation": False,
    }
