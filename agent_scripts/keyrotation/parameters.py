"""The document's parameters as the agent receives them (flags, else the SSM_<Name> variables Run
Command sets), checked again against the contract's patterns."""

import argparse
import configparser
import os
import re
from typing import Any, Dict, List

from .base import IS_WINDOWS, AgentError
from .contract import PARAMETERS, PATTERNS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: D102 - argparse hook
        raise AgentError("invalid_parameter", "bad command line: " + message)


def read_parameters(argv: List[str]) -> Dict[str, str]:
    parser = _Parser(
        prog="keyrotation_agent.py",
        description="Rotate (or verify) the access key of one profile in a credentials file. Every flag "
        "defaults to the matching SSM_<Name> environment variable, as set by Run Command.",
    )
    for parameter in PARAMETERS:
        parser.add_argument(
            parameter.flag, dest=parameter.name, default=None, help="default: $SSM_" + parameter.name
        )
    args = parser.parse_args(argv)
    values = {}
    for parameter in PARAMETERS:
        default = parameter.default or ""
        value = getattr(args, parameter.name)
        if value is None:
            value = os.environ.get("SSM_" + parameter.name)
        if value is None or (value == "" and default):
            value = default
        values[parameter.name] = value
    return values


def validate_parameters(params: Dict[str, str]) -> None:
    for name, pattern in PATTERNS.items():
        if not re.fullmatch(pattern, params[name]):
            raise AgentError("invalid_parameter", "%s does not match %s" % (name, pattern))
    path = params["CredentialsFile"]
    components = re.split(r"[/\\]", path)[1:]
    if any(part in ("", ".", "..") for part in components):
        raise AgentError("invalid_parameter", "CredentialsFile must be an absolute path without '.' or '..'")
    if not IS_WINDOWS and (not path.startswith("/") or "\\" in path):
        raise AgentError("invalid_parameter", "CredentialsFile must be an absolute POSIX path")
    if params["Profile"] == configparser.DEFAULTSECT:
        raise AgentError(
            "invalid_parameter", "Profile DEFAULT is configparser's defaults section, not a profile"
        )
    if params["Action"] == "verify" and not params["ExpectedAccessKeyId"]:
        raise AgentError("invalid_parameter", "Action verify needs ExpectedAccessKeyId")
    if IS_WINDOWS and params["ReloadHook"]:
        raise AgentError("invalid_parameter", "reload hooks are not supported on Windows yet")
