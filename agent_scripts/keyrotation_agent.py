#!/usr/bin/env python3
# (PTH: the agent works with file descriptors and dir_fd on purpose; S105: key names, not passwords.)
"""Key rotation agent: writes the current access key of a secret into one profile of a credentials file.

Runs on the server (as root, from the Run Command document ``rotate-access-key``, or by hand for debugging).
Python 3.6+ (RHEL 8's /usr/libexec/platform-python is 3.6) and the standard library only; AWS calls go through
botocore when it is importable, else through the AWS CLI (v1 or v2). See docs/agent.md for what it may touch,
its exit codes and its result line.

Python 3.6 is why this file has no ``from __future__ import annotations`` (3.7+), no dataclasses, walrus,
positional-only parameters or ``subprocess.run(capture_output=..., text=...)``: annotations are evaluated at
definition time, so a name used in one must already be defined (or be a string); local variables are typed
with ``# type:`` comments. ruff checks this file against Python 3.7 syntax; tests/agent/test_agent_pythons.py
runs it on every CPython from 3.6 to 3.13.

Action ``rotate``:
  1. validate every input (the document's patterns, again) and refuse unsafe targets;
  2. fetch the secret's AWSCURRENT value with the server's own credentials and check its shape;
  3. rewrite only the profile's two key lines (atomically, keeping the file's owner, group, mode and extended
     attributes such as ACLs and the SELinux label, or refusing before any change; a new file is 0600 and
     FileOwner's; a root-only 0600 backup);
  4. read the file as FileOwner (a child that drops to that user), then prove the new key works from this
     server (sts:GetCallerIdentity with that profile); if either fails, restore;
  5. run the named reload hook from the root-owned hooks directory;
  6. print exactly one ``KEYROTATION_RESULT {json}`` line; exit non-zero on any failure.
Action ``verify`` checks, writing nothing, that the profile holds ExpectedAccessKeyId and that it works.

The code is the package ``keyrotation`` beside this file (the document ships both as one payload):
``contract`` (the document's parameters, the result line, the exit codes: shared with the engine),
``parameters``, ``paths``, ``files`` (the directory, atomic writes, file attributes), ``credentials`` (the
rewrite, pure functions), ``aws`` (botocore or the AWS CLI), ``owner`` (the owner's read check), ``hooks``,
``actions`` (rotate, audit, verify) and ``main`` (the result line). This file only starts it.

Test affordances (docs/design.md section 6 and docs/agent.md): ``KEYROTATION_ROOT`` prefixes every path the
agent touches; ``AWS_ENDPOINT_URL`` is honoured by botocore and the CLI; the ``KEYROTATION_*`` tunables
(docs/agent.md).
Nothing here pauses for tests: the tests that kill the agent mid-write slow its os calls from outside.
"""

import sys

from keyrotation.main import main  # the package beside this file: python puts this file's directory first

if __name__ == "__main__":
    sys.exit(main())
