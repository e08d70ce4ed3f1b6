"""infra/config.py: the engine's validation plus infra-only checks, errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from infra_synth import SETTINGS

from infra.config import InvalidSettings, load_config


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def _settings() -> dict:
    loaded: dict = yaml.safe_load(SETTINGS.read_text(encoding="utf-8"))
    return loaded


def test_the_test_settings_load() -> None:
    config = load_config(SETTINGS)
    assert [user.name for user in config.settings.users] == ["svc-web", "svc-web-reports", "svc-db"]
    assert config.lambda_settings()["managed_path"] == "/keyrotation/"


def test_an_engine_validation_error_names_the_file_and_the_field(tmp_path: Path) -> None:
    data = _settings()
    data["users"][1]["profile"] = "has space"
    path = _write(tmp_path, data)
    with pytest.raises(InvalidSettings, match=rf"^{path}: users\[1\]\.profile: "):
        load_config(path)


def test_a_missing_file_or_bad_yaml_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettings, match="cannot read the settings file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(InvalidSettings, match="not valid YAML"):
        load_config(_write(tmp_path, "users: [\n"))


def test_user_names_must_be_usable_in_execution_names(tmp_path: Path) -> None:
    data = _settings()
    data["users"][2]["name"] = "svc,db"
    # (the scheduled machine names executions after users; ',' is not allowed there)
    with pytest.raises(InvalidSettings, match=r"users\[2\]\.name: "):
        load_config(_write(tmp_path, data))


def test_verify_interval_must_be_a_valid_retry_interval(tmp_path: Path) -> None:
    data = _settings()
    data["defaults"]["waits"]["verify_interval_seconds"] = 0
    with pytest.raises(
        InvalidSettings, match=r"defaults\.waits\.verify_interval_seconds: must be at least 1"
    ):
        load_config(_write(tmp_path, data))


def test_a_stack_needs_at_least_one_user(tmp_path: Path) -> None:
    data = _settings()
    data["users"] = []
    with pytest.raises(InvalidSettings, match=r"users: at least one user"):
        load_config(_write(tmp_path, data))
