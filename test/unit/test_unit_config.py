"""The admin's YAML file: galaxy_cloud_storage.config."""

import os
import re

import pytest

from galaxy_cloud_storage.config import (
    CONFIG_FILE_ENV,
    CONFIG_FILE_KEY,
    config_file_path,
    DEFAULT_CONFIG_FILE_NAME,
    InvalidPluginConfig,
    load_config,
    PluginConfig,
)
from galaxy_cloud_storage.providers import clouds

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "config_samples", "cloud_storage_conf.yml.sample")


class GalaxyConfig:
    """Stand-in for Galaxy's app.config: a config_dir and galaxy.yml's keys."""

    def __init__(self, config_dir, **keys):
        self.config_dir = str(config_dir)
        self._keys = keys

    def get(self, key, default=None):
        return self._keys.get(key, default)


def write(path, text):
    path.write_text(text)
    return str(path)


# -- loading ---------------------------------------------------------------------------------------


def test_defaults_without_a_file():
    config = load_config(None)
    assert config.enabled_providers == ["aws", "azure", "gcp"]
    assert not config.providers.openstack.enabled
    assert all(not config.provider(name).allow_stored_secrets for name in clouds())
    assert str(config.providers.azure.authority_host) == "https://login.microsoftonline.com/"
    assert config.source is None


def test_valid_file(tmp_path):
    path = write(
        tmp_path / "conf.yml",
        """
providers:
  aws:
    allow_stored_secrets: true
    s3_endpoint_url: https://s3.example.org
    sts_region: eu-west-1
  gcp:
    enabled: false
  openstack:
    enabled: true
    keystone_url: https://keystone.example.org:5000/v3
    region: RegionOne
max_request_bytes: 4096
max_objects_per_request: 500
""",
    )
    config = load_config(path)
    assert config.source == path
    assert config.enabled_providers == ["aws", "azure", "openstack"]
    assert config.providers.aws.allow_stored_secrets
    assert not config.providers.azure.allow_stored_secrets
    assert str(config.providers.aws.s3_endpoint_url) == "https://s3.example.org/"
    assert config.providers.aws.sts_region == "eu-west-1"
    assert str(config.providers.openstack.keystone_url) == "https://keystone.example.org:5000/v3"
    assert config.max_request_bytes == 4096
    assert config.max_objects_per_request == 500


def test_empty_file_gives_defaults(tmp_path):
    config = load_config(write(tmp_path / "conf.yml", ""))
    assert config.enabled_providers == ["aws", "azure", "gcp"]


@pytest.mark.parametrize(
    "text, named",
    [
        ("provider: {}\n", "provider"),
        ("providers:\n  dropbox: {}\n", "dropbox"),
        ("providers:\n  aws:\n    allow_stored_secret: true\n", "allow_stored_secret"),
        ("providers:\n  azure:\n    endpoint: https://x.example\n", "endpoint"),
    ],
)
def test_unknown_key_refused(tmp_path, text, named):
    with pytest.raises(InvalidPluginConfig, match=named) as e:
        load_config(write(tmp_path / "conf.yml", text))
    assert "Extra inputs are not permitted" in str(e.value)


@pytest.mark.parametrize(
    "text, named",
    [
        ("providers:\n  aws:\n    enabled: maybe\n", "providers.aws.enabled"),
        ("providers:\n  gcp:\n    allow_stored_secrets: [1]\n", "providers.gcp.allow_stored_secrets"),
        ("providers:\n  aws:\n    sts_endpoint_url: not a url\n", "providers.aws.sts_endpoint_url"),
        ("providers: [aws]\n", "providers"),
        ("max_request_bytes: lots\n", "max_request_bytes"),
        ("max_request_bytes: 10\n", "max_request_bytes"),  # below the 1024 floor
        ("max_objects_per_request: 0\n", "max_objects_per_request"),
    ],
)
def test_wrong_type_refused(tmp_path, text, named):
    with pytest.raises(InvalidPluginConfig, match=named):
        load_config(write(tmp_path / "conf.yml", text))


def test_openstack_enabled_needs_keystone_url(tmp_path):
    with pytest.raises(InvalidPluginConfig, match="keystone_url is required"):
        load_config(write(tmp_path / "conf.yml", "providers:\n  openstack:\n    enabled: true\n"))
    # disabled, it may stay without one
    config = load_config(write(tmp_path / "off.yml", "providers:\n  openstack:\n    region: r\n"))
    assert "openstack" not in config.enabled_providers


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "Cannot read"),  # no such file
        ("providers: [unclosed\n", "Cannot read"),  # YAML syntax error
        ("- aws\n- gcp\n", "must be a YAML mapping"),
        ("just a string\n", "must be a YAML mapping"),
    ],
)
def test_unreadable_or_not_a_mapping(tmp_path, text, message):
    path = tmp_path / "conf.yml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InvalidPluginConfig, match=message) as e:
        load_config(str(path))
    assert str(path) in str(e.value)


# -- where the file is ---------------------------------------------------------------------------------


def test_path_galaxy_yml_key_wins_relative_to_config_dir(tmp_path):
    (tmp_path / DEFAULT_CONFIG_FILE_NAME).write_text("")
    galaxy = GalaxyConfig(tmp_path, **{CONFIG_FILE_KEY: "cloud/mine.yml"})
    path = config_file_path(galaxy, environ={CONFIG_FILE_ENV: "/etc/from_env.yml"})
    assert path == os.path.join(str(tmp_path), "cloud/mine.yml")


def test_path_galaxy_yml_key_may_be_absolute(tmp_path):
    galaxy = GalaxyConfig(tmp_path, **{CONFIG_FILE_KEY: "/etc/galaxy/cloud.yml"})
    assert config_file_path(galaxy, environ={}) == "/etc/galaxy/cloud.yml"


def test_path_env_over_default_file(tmp_path):
    (tmp_path / DEFAULT_CONFIG_FILE_NAME).write_text("")
    assert (
        config_file_path(GalaxyConfig(tmp_path), environ={CONFIG_FILE_ENV: "/etc/from_env.yml"}) == "/etc/from_env.yml"
    )


def test_path_default_file_when_it_exists(tmp_path):
    galaxy = GalaxyConfig(tmp_path)
    assert config_file_path(galaxy, environ={}) is None
    (tmp_path / DEFAULT_CONFIG_FILE_NAME).write_text("")
    assert config_file_path(galaxy, environ={}) == str(tmp_path / DEFAULT_CONFIG_FILE_NAME)


def test_path_reads_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_FILE_ENV, "/etc/from_env.yml")
    assert config_file_path(GalaxyConfig(tmp_path)) == "/etc/from_env.yml"
    monkeypatch.delenv(CONFIG_FILE_ENV)
    assert config_file_path(GalaxyConfig(tmp_path)) is None


def test_shipped_sample_is_valid_and_matches_the_defaults():
    loaded = load_config(SAMPLE)
    assert loaded.model_dump(exclude={"source"}) == PluginConfig().model_dump(exclude={"source"})


def test_shipped_sample_documents_every_setting_of_every_cloud():
    """An admin reads the sample, not the models: each cloud's section names each of its settings
    (set, or commented out at its default). ``ca_bundle`` is documented once, for all clouds."""
    with open(SAMPLE) as fh:
        lines = fh.read().splitlines()
    sections: dict = {}
    current = None
    for line in lines:
        if re.match(r"^  [a-z]\w*:\s*$", line):
            current = sections.setdefault(line.strip().rstrip(":"), [])
        elif current is not None and re.match(r"^\S", line):
            current = None
        elif current is not None:
            if found := re.match(r"^    #?([a-z][a-z0-9_]*):", line):
                current.append(found.group(1))
    for plugin in clouds().values():
        documented = set(sections.get(plugin.name, []))
        declared = set(plugin.settings_model.model_fields) - {"ca_bundle"}
        assert declared <= documented, (plugin.name, sorted(declared - documented))
        assert documented <= declared | {"ca_bundle"}, (plugin.name, sorted(documented - declared))
