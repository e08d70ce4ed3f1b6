"""Reload hooks: a named executable of the root-owned hooks directory, run after a rotation."""

import os
import stat
import subprocess
from typing import Dict

from .base import IS_WINDOWS, AgentError, env_float, log
from .paths import host_path, split_logical

HOOKS_DIR = r"C:\ProgramData\keyrotation\hooks.d" if IS_WINDOWS else "/etc/keyrotation/hooks.d"

# How much of a reload hook's output (stdout and stderr, merged) the agent relays to its own stderr.
HOOK_OUTPUT_SHOWN = 1000


def run_hook(name: str, context: Dict[str, str]) -> None:
    """Run ``name`` from the hooks directory: root-owned chain, not group/world-writable, with a timeout."""
    parts = split_logical(HOOKS_DIR) + [name]
    path = host_path("/")
    shown = ""
    for index, part in enumerate(parts):
        path = os.path.join(path, part)
        shown += "/" + part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise AgentError(
                "hook_failed", "reload hook %s not found (%s is missing)" % (name, shown)
            ) from None
        last = index == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            raise AgentError("hook_failed", "%s is a symlink" % shown)
        if last and not stat.S_ISREG(st.st_mode) or not last and not stat.S_ISDIR(st.st_mode):
            raise AgentError("hook_failed", "%s is not a %s" % (shown, "file" if last else "directory"))
        if st.st_uid != 0:
            raise AgentError("hook_failed", "%s is not owned by root" % shown)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise AgentError("hook_failed", "%s is writable by group or others" % shown)
        if last and not st.st_mode & stat.S_IXUSR:
            raise AgentError("hook_failed", "%s is not executable" % shown)
    timeout = env_float("KEYROTATION_HOOK_TIMEOUT", 120.0)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(context)
    # The document runs us under umask 077; a daemon (re)started by the hook should not inherit it.
    previous_umask = os.umask(0o022)
    try:
        proc = subprocess.Popen(
            [path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    finally:
        os.umask(previous_umask)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AgentError("hook_failed", "reload hook %s timed out after %.0f s" % (name, timeout)) from None
    text = output.decode("utf-8", "replace").strip()
    if len(text) > HOOK_OUTPUT_SHOWN:  # bounded: the SSM Agent keeps little of the command's output
        log("hook %s wrote %d characters; the last %d:" % (name, len(text), HOOK_OUTPUT_SHOWN))
        text = text[-HOOK_OUTPUT_SHOWN:]
    if text:
        log("hook %s: %s" % (name, text))
    if proc.returncode != 0:
        raise AgentError("hook_failed", "reload hook %s exited %d: %s" % (name, proc.returncode, text[-200:]))
