"""Settings validation: every bad value is refused with a message naming the field path."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from rotation import settings as settings_module
from rotation.settings import InvalidSettings, load_settings, load_settings_file

REPO = Path(__file__).resolve().parents[2]


def valid() -> dict[str, Any]:
    return {
        "managed_path": "/keyrotation/",
        "secret_prefix": "keyrotation/",
        "defaults": {
            "max_key_age_days": 90,
            "waits": {"verify_interval_seconds": 10, "poll_seconds": 30, "max_polls": 120,
                      "observe_seconds": 1800, "grace_seconds": 86400},
            "usage_margin_seconds": 60,
            "command_timeout_seconds": 600,
            "max_concurrency": "50",
        },
        "schedule": {"expression": "cron(0 3 ? * SUN *)", "timezone": "Etc/UTC", "duration_hours": 4,
                     "cutoff_hours": 1},
        "alerts": {"email": None},
        "server_groups": [
            {"name": "web", "tag": {"key": "keyrotation-group", "value": "web"}},
            {"name": "db", "instance_ids": ["mi-0123456789abcdef0", "i-0123abcd"]},
        ],
        "users": [
            {"name": "svc-web", "server_group": "web", "credentials_file": "/home/app/.aws/credentials",
             "profile": "app", "file_owner": "app", "reload_hook": "restart-app", "max_key_age_days": 30},
            {"name": "svc-db", "server_group": "db", "credentials_file": "/root/.aws/db-credentials",
             "profile": "db", "file_owner": "root"},
        ],
    }


def test_the_repository_settings_file_is_valid() -> None:
    # GIVEN the settings file the project ships
    data = yaml.safe_load((REPO / "config" / "settings.yaml").read_text())
    # WHEN it is validated THEN its user is found with its options
    settings = load_settings(data)
    user = settings.user("svc-web")
    assert user is not None and user.profile == "app"
    assert settings.secret_id(user) == "keyrotation/web/svc-web"


def test_defaults_apply_to_optional_user_fields() -> None:
    settings = load_settings(valid())
    db = settings.user("svc-db")
    assert db is not None
    assert (db.reload_hook, db.allow_offline, settings.max_key_age_days(db)) == (None, False, 90)
    web = settings.user("svc-web")
    assert web is not None and settings.max_key_age_days(web) == 30
    assert settings.group("db").instance_ids == ("mi-0123456789abcdef0", "i-0123abcd")


def test_json_round_trip_gives_equal_settings(tmp_path: Path) -> None:
    # GIVEN settings validated once and written as the CDK app bundles them
    settings = load_settings(valid())
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings.to_dict()))
    # WHEN the Lambda reads them back THEN nothing changed
    assert load_settings_file(path) == settings


def test_a_settings_file_is_validated_once_per_content(tmp_path: Path) -> None:
    # GIVEN the bundled settings file, read by one invocation
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(load_settings(valid()).to_dict()))
    first = load_settings_file(path)
    # WHEN the next invocation reads the same bytes THEN it gets the validated settings without re-validating
    assert load_settings_file(path) is first
    # WHEN the file changes THEN the new content is what counts, and bad content is refused every time
    changed = valid()
    changed["managed_path"] = "/other/"
    path.write_text(json.dumps(load_settings(changed).to_dict()))
    assert load_settings_file(path).managed_path == "/other/"
    path.write_text("{")
    for _ in range(2):
        with pytest.raises(InvalidSettings, match="is not JSON"):
            load_settings_file(path)


def test_settings_are_immutable() -> None:
    settings = load_settings(valid())
    with pytest.raises(AttributeError):
        settings.managed_path = "/other/"  # type: ignore[misc]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    parts = re.findall(r"[^.\[\]]+", path)
    target: Any = data
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value


_DELETE = object()

BAD_VALUES = [
    ("users[1].name", "svc db", "users[1].name:"),
    ("users[1].name", "x" * 65, "users[1].name:"),
    ("users[1].name", "svc-é", "users[1].name:"),
    ("users[1].name", "svc-web", "users[1].name: duplicate of users[0]"),
    ("users[1].name", "SVC-WEB", "users[1].name: duplicate of users[0]"),
    ("managed_path", "keyrotation/", "managed_path:"),
    ("managed_path", "/keyrotation", "managed_path:"),
    ("managed_path", "/a//b/", "managed_path:"),
    ("users[0].credentials_file", "home/app/.aws/credentials", "users[0].credentials_file:"),
    ("users[0].credentials_file", "/home/app/../../etc/shadow", "users[0].credentials_file:"),
    ("users[0].credentials_file", "/home/app/./credentials", "users[0].credentials_file:"),
    ("users[0].credentials_file", "/home/app/", "users[0].credentials_file:"),
    ("users[0].credentials_file", "/home/app/cred entials", "users[0].credentials_file:"),
    ("users[0].credentials_file", "/home/$(id)/x", "users[0].credentials_file:"),
    ("users[0].profile", "app profile", "users[0].profile:"),
    ("users[0].profile", "", "users[0].profile:"),
    ("users[0].profile", "a]b", "users[0].profile:"),
    ("users[1].credentials_file", "/root/.aws/credentials",
     "users[1].credentials_file: /root/.aws/credentials belongs to the SSM Agent"),
    ("users[0].reload_hook", "../../bin/sh", "users[0].reload_hook:"),
    ("users[0].reload_hook", "..", "users[0].reload_hook:"),
    ("users[0].reload_hook", "restart app", "users[0].reload_hook:"),
    ("users[0].reload_hook", 5, "users[0].reload_hook:"),
    ("users[0].file_owner", "App User", "users[0].file_owner:"),
    ("users[0].file_owner", "x" * 33, "users[0].file_owner:"),
    ("users[0].profile", ".hidden", "users[0].profile:"),
    ("users[0].reload_hook", "-rf", "users[0].reload_hook:"),
    ("users[0].credentials_file", "/" + "a" * 61, "users[0].credentials_file:"),
    ("users[0].credentials_file", "/a" * 17, "users[0].credentials_file:"),
    ("secret_prefix", "/keyrotation/",
     "users[0].name: the user's secret name '/keyrotation/web/svc-web' (secret_prefix + server_group + '/' + "
     "name) is not a valid secret name"),
    ("users[0].file_owner", "-app", "users[0].file_owner:"),
    ("users[0].server_group", "nope", "users[0].server_group: no server group named 'nope'"),
    ("users[0].max_key_age_days", 0, "users[0].max_key_age_days:"),
    ("users[0].max_key_age_days", "90", "users[0].max_key_age_days:"),
    ("users[0].allow_offline", "yes", "users[0].allow_offline:"),
    ("users[0].colour", "red", "users[0].colour: unknown field"),
    ("users[0].profile", _DELETE, "users[0].profile: required"),
    ("server_groups[1].instance_ids[0]", "mi-123", "server_groups[1].instance_ids[0]:"),
    ("server_groups[1].instance_ids[1]", "i-0123ABCD", "server_groups[1].instance_ids[1]:"),
    ("server_groups[1].instance_ids", [], "server_groups[1].instance_ids: must not be empty"),
    ("server_groups[1].instance_ids[1]", "mi-0123456789abcdef0",
     "server_groups[1].instance_ids[1]: duplicate"),
    ("server_groups[0].instance_ids", ["mi-0123456789abcdef0"], "server_groups[0]: needs exactly one"),
    ("server_groups[1].instance_ids", _DELETE, "server_groups[1]: needs exactly one"),
    ("server_groups[1].name", "web", "server_groups[1].name: duplicate of server_groups[0]"),
    ("server_groups[1].name", "Web_Servers", "server_groups[1].name:"),
    ("server_groups[0].tag.key", "aws:foo", "server_groups[0].tag.key: the aws: prefix is reserved"),
    ("server_groups[0].tag.value", "", "server_groups[0].tag.value:"),
    ("defaults.waits.poll_seconds", -1, "defaults.waits.poll_seconds: must be at least 0"),
    ("defaults.waits.max_polls", 0, "defaults.waits.max_polls: must be at least 1"),
    ("defaults.waits.observe_seconds", 1.5, "defaults.waits.observe_seconds: must be an integer"),
    ("defaults.waits.grace_seconds", True, "defaults.waits.grace_seconds: must be an integer"),
    ("defaults.waits.grace_seconds", _DELETE, "defaults.waits.grace_seconds: required"),
    ("defaults.max_concurrency", 50, "defaults.max_concurrency:"),
    ("defaults.max_concurrency", "0", "defaults.max_concurrency:"),
    ("defaults.command_timeout_seconds", 10, "defaults.command_timeout_seconds:"),
    ("schedule.cutoff_hours", 4, "schedule.cutoff_hours: must be less than duration_hours"),
    ("schedule.max_parallel_users", 10, "schedule.max_parallel_users: no longer a setting"),
    ("schedule.max_users_per_run", 0, "schedule.max_users_per_run: must be at least 1"),
    ("schedule.max_users_per_run", 100_001, "schedule.max_users_per_run: must be at most 100000"),
    ("schedule.starts_per_minute", 0, "schedule.starts_per_minute: must be at least 1"),
    ("schedule.starts_per_minute", 1201, "schedule.starts_per_minute: must be at most 1200"),
    ("schedule.starts_per_minute", 1.5, "schedule.starts_per_minute: must be an integer"),
    ("schedule.overdue_alarm_days", 0, "schedule.overdue_alarm_days: must be at least 1"),
    ("schedule.expression", "every sunday", "schedule.expression:"),
    ("alerts.email", "not-an-address", "alerts.email:"),
    ("secret_prefix", "key rotation/", "secret_prefix:"),
    ("users", {"name": "x"}, "users: must be a list"),
    ("users[0]", "svc-web", "users[0]: must be a mapping"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), BAD_VALUES,
    ids=[f"{p}=<missing>" if v is _DELETE else f"{p}={v!r}" for p, v, _ in BAD_VALUES],
)
def test_bad_value_is_refused_naming_the_field(path: str, value: Any, message: str) -> None:
    # GIVEN an otherwise valid settings document with one bad value
    data = copy.deepcopy(valid())
    _set(data, path, value)
    # WHEN it is validated THEN the error names the field
    with pytest.raises(InvalidSettings) as raised:
        load_settings(data)
    assert str(raised.value).startswith(message), str(raised.value)


def test_two_users_cannot_write_the_same_profile_on_the_same_servers() -> None:
    data = valid()
    data["users"][1].update(server_group="web", credentials_file="/home/app/.aws/credentials", profile="app")
    with pytest.raises(InvalidSettings, match=r"^users\[1\]\.profile: users\[0\] already writes"):
        load_settings(data)


def test_the_default_profile_is_fine_in_an_application_file() -> None:
    data = valid()
    data["users"][0]["profile"] = "default"
    assert load_settings(data).users[0].profile == "default"


def test_top_level_must_be_a_mapping_and_unknown_keys_are_refused() -> None:
    with pytest.raises(InvalidSettings, match="^settings: must be a mapping"):
        load_settings([])
    data = valid()
    data["userz"] = []
    with pytest.raises(InvalidSettings, match="^settings.userz: unknown field"):
        load_settings(data)


def test_unreadable_or_non_json_file_is_invalid_settings(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettings, match="cannot read settings file"):
        load_settings_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("managed_path: /x/")
    with pytest.raises(InvalidSettings, match="is not JSON"):
        load_settings_file(bad)


@pytest.mark.parametrize("name", [n for n in dir(settings_module) if n.endswith("_PATTERN")])
def test_patterns_are_valid_re2(name: str) -> None:
    # The same patterns become the Run Command document's allowedPattern (Go RE2).
    re2 = pytest.importorskip("re2")
    pattern = getattr(settings_module, name)
    assert re2.compile(pattern) is not None


@pytest.mark.parametrize(
    "path",
    ["/home/app/.aws/credentials", "/etc/app/creds", "/opt/x/.a..b", "/srv/app-1/key_file@v2"],
)
def test_ordinary_credentials_paths_are_accepted(path: str) -> None:
    data = valid()
    data["users"][0]["credentials_file"] = path
    assert load_settings(data).users[0].credentials_file == path


def _document_patterns() -> dict[str, str]:
    from ssm_documents import render

    return {name: spec["allowedPattern"] for name, spec in render.render_document()["parameters"].items()}


def test_every_value_the_settings_accept_passes_the_documents_patterns() -> None:
    # GIVEN settings accepted by the validator (the shipped file and the test variants)
    if not (REPO / "ssm_documents" / "rotate-access-key.yaml").exists():
        pytest.skip("the Run Command document is not in this checkout")
    patterns = _document_patterns()
    samples = [yaml.safe_load((REPO / "config" / "settings.yaml").read_text()), valid()]
    for data in samples:
        settings = load_settings(data)
        for user in settings.users:
            # WHEN the engine sends them as parameters THEN SendCommand's allowedPattern accepts them
            values = {"SecretId": settings.secret_id(user), "CredentialsFile": user.credentials_file,
                      "Profile": user.profile, "FileOwner": user.file_owner,
                      "ReloadHook": user.reload_hook or ""}
            for name, value in values.items():
                assert re.fullmatch(patterns[name], value), (name, value)


@pytest.mark.parametrize("path", ["C:\\Users\\app\\.aws\\credentials", "c:/Users/app/.aws/credentials",
                                  "\\\\server\\share\\credentials", "/home/app\\.aws/credentials"])
def test_a_windows_credentials_path_is_refused_as_not_supported_yet(path: str) -> None:
    data = valid()
    data["users"][0]["credentials_file"] = path
    with pytest.raises(InvalidSettings, match=r"users\[0\]\.credentials_file: .* is a Windows path; Windows "
                                              r"servers are not supported yet"):
        load_settings(data)


def test_an_exemption_needs_a_date_and_its_reason() -> None:
    import datetime

    data = valid()
    data["users"][0].update(exempt_until="2027-01-31", exempt_reason="vendor appliance, ticket OPS-42")
    user = load_settings(data).users[0]
    assert user.exempt_until == datetime.date(2027, 1, 31)
    assert user.exempt_reason == "vendor appliance, ticket OPS-42"
    assert user.exempt_on(datetime.date(2027, 1, 31)) and not user.exempt_on(datetime.date(2027, 2, 1))
    assert load_settings(copy.deepcopy(load_settings(data).to_dict())).users[0] == user  # round trip


@pytest.mark.parametrize(("fields", "message"), [
    ({"exempt_until": "2027-01-31"}, r"users\[0\]\.exempt_reason: an exemption needs its reason"),
    ({"exempt_until": "2027-01-31", "exempt_reason": "  "}, r"exempt_reason: an exemption needs its reason"),
    ({"exempt_reason": "because"}, r"users\[0\]\.exempt_reason: given without exempt_until"),
    ({"exempt_until": "next month", "exempt_reason": "x"}, r"exempt_until: 'next month' is not a date"),
    ({"exempt_until": "2027-02-30", "exempt_reason": "x"}, r"exempt_until: '2027-02-30' is not a date"),
])
def test_a_bad_exemption_is_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    data = valid()
    data["users"][0].update(fields)
    with pytest.raises(InvalidSettings, match=message):
        load_settings(data)


@pytest.mark.parametrize("owner", ["web-team@example.com", "https://hooks.slack.com/services/T0/B0/x"])
def test_an_owner_is_an_email_address_or_an_https_webhook(owner: str) -> None:
    data = valid()
    data["users"][0]["owner"] = owner
    assert load_settings(data).users[0].owner == owner


@pytest.mark.parametrize("owner", ["web team", "http://hooks.example.com/x", "a@b", "", "x" * 600 + "@e.com"])
def test_a_bad_owner_is_refused_naming_the_field(owner: str) -> None:
    data = valid()
    data["users"][0]["owner"] = owner
    with pytest.raises(InvalidSettings, match=r"users\[0\]\.owner: .*(e-mail address or an https)"):
        load_settings(data)


def test_a_config_rule_name_is_checked() -> None:
    data = valid()
    data["alerts"] = {"email": None, "config_rule": "access-keys-rotated"}
    assert load_settings(data).alerts.config_rule == "access-keys-rotated"
    data["alerts"]["config_rule"] = "access keys rotated"
    with pytest.raises(InvalidSettings, match=r"alerts\.config_rule: .* is not an AWS Config rule name"):
        load_settings(data)
