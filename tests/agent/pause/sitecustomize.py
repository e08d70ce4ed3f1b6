"""A pause at each write step of the agent, from outside the agent, so that tests can SIGKILL it mid-write.

Python's `site` module imports this file before the agent's own code runs when its directory is on the
agent's PYTHONPATH; `agent_support.pause_env(seconds)` sets that together with KEYROTATION_TEST_PAUSE_SECONDS.
Without that variable (or with 0) it changes nothing. With it, it wraps the os-level calls of the agent's
atomic write (agent_scripts/keyrotation_agent.py: `Directory.prepare`, `Directory.commit`, and the backup in
`rotate`) and, at each step, writes `test pause: <step>` to stderr and sleeps:

- `temp file written: <name>`: a file this process created is about to be fsynced (bytes and attributes in);
- `temp file synced`: that file, fsynced, has just been closed;
- `renamed over <name>`: a rename has just put a file in place (its directory is not fsynced yet);
- `backup written`: the directory has been fsynced after a rename over the backup (`*.keyrotation-backup`).

A rotation that rewrites an existing file so announces 7 steps: the new file's temp written and synced, the
backup's temp written and synced, renamed over the backup, backup written, renamed over the file.

Runs on every Python the agent runs on (3.6 and up: KEYROTATION_TEST_AGENT_PYTHON), so no newer syntax.
"""

import os
import sys
import time

BACKUP_SUFFIX = ".keyrotation-backup"  # the agent's BACKUP_SUFFIX


class WriteSteps:
    """Wrappers of os.open, os.fsync, os.close, os.rename and os.replace that pause after each write step."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.created = {}  # fd -> name, for the files this process created, until closed
        self.synced = set()  # those of them already fsynced
        self.renamed = ""  # the destination of the last rename, until the directory fsync after it
        self.real_open, self.real_fsync, self.real_close = os.open, os.fsync, os.close
        self.real_rename, self.real_replace = os.rename, os.replace

    def pause(self, step: str) -> None:
        sys.stderr.write("test pause: " + step + "\n")
        sys.stderr.flush()
        time.sleep(self.delay)

    def open(self, path, flags, *args, **kwargs):
        fd = self.real_open(path, flags, *args, **kwargs)
        if flags & os.O_CREAT:
            self.created[fd] = os.fsdecode(path)
        return fd

    def fsync(self, fd):
        if fd in self.created:
            self.pause("temp file written: " + self.created[fd])
            self.real_fsync(fd)
            self.synced.add(fd)
            return
        self.real_fsync(fd)
        renamed, self.renamed = self.renamed, ""
        if renamed.endswith(BACKUP_SUFFIX):
            self.pause("backup written")

    def close(self, fd):
        self.created.pop(fd, None)
        synced = fd in self.synced
        self.synced.discard(fd)
        self.real_close(fd)
        if synced:
            self.pause("temp file synced")

    def rename(self, src, dst, *args, **kwargs):
        self.real_rename(src, dst, *args, **kwargs)
        self.renamed_over(dst)

    def replace(self, src, dst, *args, **kwargs):
        self.real_replace(src, dst, *args, **kwargs)
        self.renamed_over(dst)

    def renamed_over(self, dst) -> None:
        self.renamed = os.fsdecode(dst)
        self.pause("renamed over " + self.renamed)

    def install(self) -> None:
        os.open, os.fsync, os.close = self.open, self.fsync, self.close
        os.rename, os.replace = self.rename, self.replace


def main() -> None:
    delay = float(os.environ.get("KEYROTATION_TEST_PAUSE_SECONDS", "") or 0)
    if delay > 0:
        WriteSteps(delay).install()


main()
