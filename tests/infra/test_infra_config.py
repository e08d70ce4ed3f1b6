"""infra/config.py: the engine's validation plus infra-only checks, errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from infra_synth import SETTINGS

from infra.config import MAX_SERVER_GROUPS, InvalidSettings, load_config


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
    # (IAM allows ',' in a user name, Secrets Manager not in the user's secret name)
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


def test_an_empty_or_open_secret_prefix_is_refused(tmp_path: Path) -> None:
    # GIVEN a prefix that is not a namespace of its own (the steps may use every secret starting with it)
    for prefix in ("", "keyrotation"):
        data = _settings()
        data["secret_prefix"] = prefix
        # THEN the synth stops naming the field and why
        with pytest.raises(InvalidSettings, match=r"secret_prefix: .* must end with '/'"):
            load_config(_write(tmp_path, data))


def test_more_server_groups_than_one_stack_deploys_are_refused_naming_the_limit(tmp_path: Path) -> None:
    # GIVEN 201 server groups (each one costs the stack an output; CloudFormation allows 200)
    data = _settings()
    data["server_groups"] = [{"name": f"g{i}", "tag": {"key": "keyrotation-group", "value": f"g{i}"}}
                             for i in range(MAX_SERVER_GROUPS + 1)]
    for user in data["users"]:
        user["server_group"] = "g0"
    # THEN the synth stops before CloudFormation would, naming the limit and the numbers
    with pytest.raises(InvalidSettings, match=r"server_groups: 201 server groups, but one stack deploys at "
                                              r"most 200: CloudFormation allows 200 outputs per stack"):
        load_config(_write(tmp_path, data))
    # AND exactly the limit is accepted
    data["server_groups"] = data["server_groups"][:MAX_SERVER_GROUPS]
    assert len(load_config(_write(tmp_path, data)).settings.server_groups) == 200


def test_users_cost_the_stack_nothing(tmp_path: Path) -> None:
    # thousands of users in one group: accepted (their secrets are created at run time, not deployed)
    data = _settings()
    template = data["users"][0]
    data["users"] = [{**template, "name": f"svc-{i:05d}", "profile": f"p{i:05d}"} for i in range(5000)]
    assert len(load_config(_write(tmp_path, data)).settings.users) == 5000


def test_a_second_stack_gets_its_own_name_from_the_context() -> None:
    import app as cdk_app

    app = cdk_app.build_app(SETTINGS, context={"stack_name": "IamKeyRotation-b"}, checks=False)
    stack = app.node.find_child(cdk_app.STACK_ID)
    assert stack.stack_name == "IamKeyRotation-b"  # type: ignore[attr-defined]
