import re

import pytest
from django.core.exceptions import ValidationError

from evalsite.catalog.models import System
from generation.config import ConfigError, SamplingConfig, validate_backend_config


def test_sampling_defaults_are_the_papers():
    s = SamplingConfig()
    assert (s.top_p, s.temperature, s.repetition_penalty, s.max_new_tokens) == (0.9, 0.7, 1.2, 2048)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": -1}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"topp": 0.5}, "unknown field(s) topp"),
    ],
)
def test_bad_sampling_is_refused_with_the_field_named(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SamplingConfig.from_dict(data)


@pytest.mark.parametrize(
    "backend, config, message",
    [
        ("nope", {}, "not one of"),
        ("openai_compat", {"model": "gpt-4"}, "base_url is required"),
        ("openai_compat", {"base_url": "localhost:8000", "model": "m"}, "must start with http"),
        ("openai_compat", {"base_url": "http://x/v1", "model": "m", "api": "graphql"}, "api must be"),
        (
            "openai_compat",
            {"base_url": "http://x/v1", "model": "m", "concurrency": "8"},
            "concurrency has the wrong type",
        ),
        ("hf_local", {}, "model_path is required"),
        ("hf_local", {"model_path": "/definitely/not/here"}, "does not exist"),
        ("imported", {"path": "x"}, "unknown field(s) path"),
    ],
)
def test_bad_backend_configs_are_refused_with_what_to_fix(backend, config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_backend_config(backend, config)


def test_a_model_folder_without_config_json_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="has no config.json"):
        validate_backend_config("hf_local", {"model_path": str(tmp_path)})
    (tmp_path / "config.json").write_text("{}")
    assert validate_backend_config("hf_local", {"model_path": str(tmp_path)}) == {"model_path": str(tmp_path)}


@pytest.mark.django_db
def test_system_clean_reports_bad_fields():
    system = System(name="x", backend="openai_compat", backend_config={"model": "m"}, sampling={"top_p": 2})
    with pytest.raises(ValidationError) as excinfo:
        system.full_clean()
    assert set(excinfo.value.message_dict) == {"backend_config", "sampling"}
