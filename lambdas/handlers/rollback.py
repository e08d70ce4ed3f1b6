"""rollback (failure path): reactivate the old key if this rotation deactivated it, release the lock, report.

Receives the whole state with the caught error in `error` ({"Error", "Cause"}); `rotation` is missing when
prepare itself failed.
"""

from __future__ import annotations

from typing import Any

from rotation import steps
from rotation.lock import LockTable

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env
from handlers._event import failure_event


def run(event: Any) -> dict[str, Any]:
    rotation, raw_input, error = failure_event(event)
    if rotation is None:
        # prepare failed (or the state is damaged): it took no lock and changed nothing.
        return {"user": raw_input.get("user"), "mode": raw_input.get("mode", "standard"),
                "execution_id": event.get("execution_id"), "outcome": "failed", "error": error,
                "lock_held": False}
    env = load_env("LOCK_TABLE")
    return steps.rollback(rotation, error, iam=_clients.iam(),
                          table=LockTable(_clients.dynamodb(), env.lock_table)).to_dict()


handler = step_handler("rollback", run)
