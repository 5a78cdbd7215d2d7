"""How a rejected config reads in an API error: manager.format_validation_error."""

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from galaxy_cloud_storage.authz.manager import format_validation_error
from galaxy_cloud_storage.providers.aws import AwsAuthzConfig


def formatted(model, raw, prefix="config"):
    with pytest.raises(ValidationError) as e:
        model.model_validate(raw)
    return format_validation_error(e.value, prefix)


def test_extra_field_is_an_unknown_field():
    assert (
        formatted(AwsAuthzConfig, {"role_arn": "arn:aws:iam::123456789012:role/r", "endpoint_url": "x"})
        == "config.endpoint_url: unknown field"
    )


def test_value_error_prefix_is_stripped():
    text = formatted(AwsAuthzConfig, {})
    assert text.startswith("config: role_arn required")
    assert "Value error" not in text


def test_field_errors_are_located_and_joined():
    text = formatted(AwsAuthzConfig, {"role_arn": "nope", "token_ttl": 60, "spare": 1})
    parts = text.split("; ")
    assert len(parts) == 3
    assert parts[0].startswith("config.role_arn: String should match pattern")
    assert parts[1] == "config.token_ttl: Input should be greater than or equal to 900"
    assert parts[2] == "config.spare: unknown field"


def test_nested_location_and_prefix():
    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int

    class Outer(BaseModel):
        items: list[Inner]

    text = formatted(Outer, {"items": [{"n": 1}, {"n": "x", "m": 2}]}, prefix="payload")
    assert text == (
        "payload.items.1.n: Input should be a valid integer, unable to parse string as an integer; "
        "payload.items.1.m: unknown field"
    )
