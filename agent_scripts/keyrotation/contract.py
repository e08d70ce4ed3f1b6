"""The contract between the engine, the Run Command document and the agent, written once (design.md §4).

The document's parameters (name, the agent's flag, pattern, default, description), the actions, the result
line (marker, fields, length) and the exit codes. ssm_documents/render.py generates the document's
parameters and launcher lines from it; the agent imports it (the document ships it beside the agent); the
engine (lambdas/rotation/fleet.py; the Lambda asset carries this file) builds SendCommand's parameters and
parses result lines with it; the tests' fakes build result lines with result_line().

Standard library only, and importable by Python 3.6 (no ``from __future__ import annotations``).
"""

import collections
import json
import re
from typing import Any, Dict, List, Optional

# The oldest Python the agent runs on; the launchers probe for it.
MIN_PYTHON = (3, 6)

Parameter = collections.namedtuple("Parameter", "name flag pattern default description")
Parameter.__doc__ = """One document parameter: a String passed to the agent only as the SSM_<name> environment
variable (interpolationType ENV_VAR) and, by the launcher, as the agent's ``flag=value`` argument."""

ACTIONS = ("rotate", "verify", "audit")

# The document's allowedPattern values. SSM matches them with Go's RE2, the agent with re.fullmatch, so each
# is anchored and means the same in both (no "$ before a final newline" difference).
PARAMETERS = (
    Parameter(
        "SecretId",
        "--secret-id",
        r"^(arn:aws[a-z-]{0,16}:secretsmanager:[a-z0-9-]{1,32}:[0-9]{12}:secret:)?"
        r"[A-Za-z0-9][A-Za-z0-9/_+=.@-]{0,511}$",
        None,
        "ARN or name of the Secrets Manager secret holding the access key (JSON with aws_access_key_id and "
        "aws_secret_access_key). The secret value is never a parameter.",
    ),
    Parameter(
        "CredentialsFile",
        "--credentials-file",
        r"^([A-Za-z]:)?([/\\]\.?[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,59}){1,16}$",
        None,
        "Absolute path of the credentials file to update, e.g. /home/app/.aws/credentials (no '..', no "
        "symlinks); created if missing.",
    ),
    Parameter(
        "Profile",
        "--profile",
        r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        None,
        "Profile (section name) to update, e.g. app.",
    ),
    Parameter(
        "FileOwner",
        "--file-owner",
        r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$",
        None,
        "Local user that owns the credentials file, e.g. app.",
    ),
    Parameter(
        "ExpectedAccessKeyId",
        "--expected-access-key-id",
        r"^((AKIA|ASIA)[A-Z0-9]{12,124})?$",
        "",
        "Access key id the secret (rotate) or the profile (verify) must hold; empty to skip the check on "
        "rotate.",
    ),
    Parameter(
        "ReloadHook",
        "--reload-hook",
        r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$",
        "",
        "Optional name of an executable in the hooks directory (/etc/keyrotation/hooks.d on Linux) to run "
        "after a rotation. Never a command line.",
    ),
    Parameter(
        "Action",
        "--action",
        "^(" + "|".join(ACTIONS) + ")$",
        "rotate",
        "rotate (write the new key and prove it works), verify (check only, write nothing) or audit "
        "(report which key id the profile holds; read-only, no AWS call).",
    ),
)
PARAMETER_NAMES = tuple(parameter.name for parameter in PARAMETERS)
PATTERNS = {parameter.name: parameter.pattern for parameter in PARAMETERS}

# The result line: the agent's only standard output, one line `KEYROTATION_RESULT {json}`. At most
# RESULT_LINE_LIMIT characters, so that the SSM Agent's truncation of the plugin output (2,500 characters of
# stdout and stderr together) can never cut it (docs/agent.md, "The result line").
RESULT_MARKER = "KEYROTATION_RESULT"
RESULT_LINE_LIMIT = 1000
STATUSES = ("ok", "error")
# Every field a result line may carry (docs/agent.md, "The result line"). BASE_FIELDS are always present;
# changed, backup, hook: rotate; held (key, no_profile, no_file) and matches: audit; error, message: failures.
RESULT_FIELDS = (
    "status", "action", "profile", "file", "access_key_id", "caller_arn",
    "changed", "backup", "hook", "held", "matches", "error", "message",
)
BASE_FIELDS = ("status", "action", "profile", "file", "access_key_id", "caller_arn")

# error code -> exit code. Codes 1-11 are the agent's, 20-22 its launchers' (before the agent runs).
EXIT_CODES = {
    "internal": 1,
    "invalid_parameter": 2,
    "refused_agent_file": 3,
    "unsafe_path": 3,
    "unknown_owner": 3,
    "unparseable_file": 3,
    "unsupported_file": 3,
    "attributes_not_kept": 3,
    "no_aws_client": 4,
    "secret_fetch_failed": 4,
    "secret_malformed": 4,
    "stale_secret": 4,
    "locked": 5,
    "write_failed": 6,
    "verification_failed": 7,
    "key_mismatch": 8,
    "hook_failed": 9,
    "restore_failed": 10,
    "unreadable_by_owner": 11,
    "no_python": 20,
    "no_workdir": 21,
    "unsupported_platform": 22,
}
# The launchers' own failures (the document's step scripts, before the agent runs): name -> (error, message).
LAUNCHER_FAILURES = {
    "no_python": ("no_python", "no Python >= %d.%d found on this server" % MIN_PYTHON),
    "no_workdir": ("no_workdir", "cannot create a temporary directory"),
    "no_unpack": ("no_workdir", "cannot unpack the agent"),
    "unsupported_platform": ("unsupported_platform", "Windows servers are not supported yet"),
}


def format_result(fields: Dict[str, Any]) -> str:
    """The result line for ``fields`` as they are (the agent scrubs and shortens them first)."""
    return RESULT_MARKER + " " + json.dumps(fields, ensure_ascii=True)


def result_line(**fields: Any) -> str:
    """A result line, its fields checked against the contract: for launchers and the tests' fakes."""
    unknown = sorted(set(fields) - set(RESULT_FIELDS))
    if unknown:
        raise ValueError("not result fields: %s" % ", ".join(unknown))
    if fields.get("status") not in STATUSES:
        raise ValueError("status must be one of %s" % ", ".join(STATUSES))
    if fields["status"] == "error" and fields.get("error") not in EXIT_CODES:
        raise ValueError("error must be a code of EXIT_CODES, not %r" % (fields.get("error"),))
    line = format_result(fields)
    if len(line) > RESULT_LINE_LIMIT:
        raise ValueError("a result line has at most %d characters" % RESULT_LINE_LIMIT)
    return line


def launcher_line(failure: str) -> str:
    """The result line a launcher prints for one of LAUNCHER_FAILURES."""
    error, message = LAUNCHER_FAILURES[failure]
    return result_line(status="error", error=error, message=message)


def parse_result(output: str) -> Optional[Dict[str, Any]]:
    """The last well-formed result line of an invocation's output, if any."""
    found = None  # type: Optional[Dict[str, Any]]
    prefix = RESULT_MARKER + " "
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith(prefix):
            continue
        try:
            data = json.loads(line[len(prefix) :])
        except ValueError:
            continue
        if isinstance(data, dict):
            found = data
    return found


def check_value(name: str, value: str) -> bool:
    """Whether ``value`` is allowed for parameter ``name`` (the whole value, as RE2 and SSM see it)."""
    return re.fullmatch(PATTERNS[name], value) is not None


def command_parameters(values: Dict[str, str]) -> Dict[str, List[str]]:
    """SendCommand's ``Parameters``: every document parameter, in order, each a one-element list.

    A parameter missing from ``values`` takes its default; one without a default must be given. (SSM checks
    the values against the patterns; the engine's come from validated settings.)
    """
    unknown = sorted(set(values) - set(PARAMETER_NAMES))
    if unknown:
        raise ValueError("not document parameters: %s" % ", ".join(unknown))
    parameters = {}
    for parameter in PARAMETERS:
        value = values.get(parameter.name, parameter.default)
        if value is None:
            raise ValueError("document parameter %s is required" % parameter.name)
        parameters[parameter.name] = [value]
    return parameters
