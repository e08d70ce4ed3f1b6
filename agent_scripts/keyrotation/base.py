"""What every part of the agent shares: its constants, AgentError (a failure with a result code) and
its diagnostics (stderr: stdout carries only the result line)."""

import os
import sys

IS_WINDOWS = os.name == "nt"

KEY_ID = "aws_access_key_id"
SECRET_KEY = "aws_secret_access_key"
SESSION_TOKEN = "aws_session_token"
BACKUP_SUFFIX = ".keyrotation-backup"


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
