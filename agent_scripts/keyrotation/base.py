"""What every part of the agent shares: its constants, AgentError (a failure with a result code) and
its diagnostics (stderr: stdout carries only the result line)."""

import os
import sys

# The result line is the agent's only stdout (keyrotation.contract: marker, fields, RESULT_LINE_LIMIT).
SHORTENABLE = ("message", "file", "backup", "caller_arn", "hook")
# How much of a reload hook's output (stdout and stderr, merged) the agent relays to its own stderr.
HOOK_OUTPUT_SHOWN = 1000

SECRET_KEY_PATTERN = r"^[A-Za-z0-9/+=]{16,256}$"

IS_WINDOWS = os.name == "nt"
HOOKS_DIR = r"C:\ProgramData\keyrotation\hooks.d" if IS_WINDOWS else "/etc/keyrotation/hooks.d"
# The SSM Agent keeps its own credentials here (profile "default") and rewrites them periodically.
SSM_AGENT_FILES = (
    (r"C:\Windows\System32\config\systemprofile\.aws\credentials",)
    if IS_WINDOWS
    else ("/root/.aws/credentials",)
)

KEY_ID = "aws_access_key_id"
SECRET_KEY = "aws_secret_access_key"
SESSION_TOKEN = "aws_session_token"
BACKUP_SUFFIX = ".keyrotation-backup"
TEMP_INFIX = ".keyrotation-tmp-"

class AgentError(Exception):
    """A failure with a result code (see EXIT_CODES); the message never contains a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def log(message: str) -> None:
    """Diagnostics go to stderr: stdout carries only the result line."""
    sys.stderr.write("keyrotation: " + message + "\n")
    sys.stderr.flush()


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise AgentError("invalid_parameter", "%s must be a number" % name) from None
