# ruff: noqa: PTH100, PTH103, PTH109, PTH118, PTH119, PTH120, PTH123
# (the zygote works with os-level paths and raw file objects on purpose, like the agent)
"""The warm interpreter's zygote (sandbox/warm_python_manager.py explains the whole): the program that
`WarmPython` starts as `python3 sandbox/warm_python.py serve SOCKET [--preload SCRIPT]...`.

It warms up (imports what the agent imports, shares botocore's caches, compiles each preloaded script and
rehearses the agent once against a throwaway root), prints `ready`, then serves the shims
(sandbox/warm_python_serve.py); each forked child becomes the `python3` a shim asked for
(sandbox/warm_python_child.py).

A fresh interpreter run as a script: standard library only (botocore aside), its two sibling modules imported
from its own directory and then forgotten, like the sandbox's own modules in `_share_botocore_caches`: the
programs the children run find none of them, as under a cold python3.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
from typing import Any

from warm_python_child import _compile, become, keep_startup_stdio
from warm_python_serve import remember_locale, serve

for _sibling in ("warm_python_child", "warm_python_serve"):
    del sys.modules[_sibling]


def _share_botocore_caches() -> None:
    """Process-level botocore caches (sandbox/moto/botocore_caches.py), applied through the sandbox's patch
    registry: a botocore other than the pinned one fails the warm-up, and the servers run the real python3.

    The sandbox's modules are imported from the checkout and forgotten again: the programs the children run
    find neither them nor the checkout on their path, as under a cold interpreter.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    try:
        from sandbox.moto import botocore_caches, registry
    finally:
        sys.path.remove(root)
        for name in [n for n in sys.modules if n == "sandbox" or n.startswith("sandbox.")]:
            del sys.modules[name]
    registry.apply(botocore_caches.patches())


class _FakeAws:
    """Answers the agent's two calls inside this process (a `before-send` handler): nothing is sent."""

    KEY_ID = "AKIAWARMUPWARMUPWARM"
    SECRET = "warmup/" + "w" * 33

    def __init__(self) -> None:
        import json

        self.answers = {
            "GetSecretValue": (json.dumps({
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:warmup-AbCdEf", "Name": "warmup",
                "SecretString": json.dumps({"aws_access_key_id": self.KEY_ID,
                                            "aws_secret_access_key": self.SECRET}),
                "VersionId": "v", "VersionStages": ["AWSCURRENT"], "CreatedDate": 1700000000.0,
            }).encode(), "application/x-amz-json-1.1"),
            "GetCallerIdentity": (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                                  b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/warmup</Arn>"
                                  b"<UserId>AIDAWARMUP</UserId><Account>123456789012</Account>"
                                  b"</GetCallerIdentityResult><ResponseMetadata><RequestId>w</RequestId>"
                                  b"</ResponseMetadata></GetCallerIdentityResponse>", "text/xml"),
        }

    def __call__(self, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        operation = kwargs.get("event_name", "").rsplit(".", 1)[-1]
        body, content_type = self.answers[operation]

        class Raw:
            def stream(self, **_: Any) -> Any:
                yield body

        headers = {"Content-Type": content_type, "x-amzn-RequestId": "w"}
        return AWSResponse(kwargs["request"].url, 200, headers, Raw())

    def on_session(self, session: Any) -> None:
        session.register("before-send", self)


@contextlib.contextmanager
def _rehearsal_environment(root: str) -> Any:
    """A throwaway server root and the environment the SSM Agent gives the agent; all restored after."""
    import botocore

    fake = _FakeAws()
    for directory in ("etc", "root/.aws", "home/app/.aws"):
        os.makedirs(os.path.join(root, directory), mode=0o700, exist_ok=True)
    with open(os.path.join(root, "etc/passwd"), "w") as handle:
        handle.write(f"root:x:0:0:root:/root:/bin/sh\napp:x:{os.getuid()}:{os.getgid()}:app:/home/app:/bin/sh\n")
    agent_credentials = os.path.join(root, "root/.aws/credentials")
    with open(agent_credentials, "w") as handle:
        handle.write(f"[default]\naws_access_key_id = {fake.KEY_ID}\naws_secret_access_key = {fake.SECRET}\n")
    with open(os.path.join(root, "home/app/.aws/credentials"), "w") as handle:  # an older key, replaced
        handle.write("[app]\naws_access_key_id = AKIAWARMUPOLDKEYWARM\n"
                     "aws_secret_access_key = " + "o" * 40 + "\n")
    saved_env, saved_umask, saved_cwd = dict(os.environ), os.umask(0o077), os.getcwd()
    os.environ.update(KEYROTATION_ROOT=root, HOME=os.path.join(root, "root"), AWS_ENDPOINT_URL="http://127.0.0.1:9",
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
                      AWS_SHARED_CREDENTIALS_FILE=agent_credentials,
                      AWS_CONFIG_FILE=os.path.join(root, "root/.aws/config"),
                      AWS_EC2_METADATA_DISABLED="true",
                      KEYROTATION_VERIFY_TIMEOUT="0", KEYROTATION_LOCK_TIMEOUT="0")
    botocore.register_initializer(fake.on_session)
    try:
        yield fake
    finally:
        botocore.unregister_initializer(fake.on_session)
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(saved_umask)
        os.chdir(saved_cwd)
        shutil.rmtree(root, ignore_errors=True)


def _preload_script(path: str) -> Any:
    """Compile a program the servers will run and execute its module body once (not as __main__)."""
    import types

    with open(path, "rb") as handle:
        source = handle.read()
    module = types.ModuleType("_warm_preload")
    module.__file__ = path
    # Its own modules beside it (the agent's package), as when it runs: they stay imported.
    sys.path.insert(0, os.path.dirname(path))
    try:
        exec(_compile(source, path), module.__dict__)  # noqa: S102
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def _rehearse_agent(module: Any) -> None:
    """Run the agent once (rotate, then verify) against a throwaway root and in-process answers, so that what
    it compiles, imports and caches on its way (regular expressions, lazy imports) is in the zygote."""
    root = os.path.abspath("rehearsal")
    with _rehearsal_environment(root) as fake, contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()):
        common = ["--secret-id=arn:aws:secretsmanager:us-east-1:123456789012:secret:warmup-AbCdEf",
                  "--credentials-file=/home/app/.aws/credentials", "--profile=app", "--file-owner=app",
                  "--reload-hook="]
        codes = [module.main(common + ["--expected-access-key-id=", "--action=rotate"]),
                 module.main(common + [f"--expected-access-key-id={fake.KEY_ID}", "--action=verify"])]
    if codes != [0, 0]:
        raise RuntimeError(f"agent rehearsal exited {codes}: {out.getvalue()[-500:]}")


def warm_up(preload: list[str]) -> None:
    remember_locale()
    keep_startup_stdio()
    # What the agent imports (and what botocore imports lazily when it creates clients and calls).
    import argparse  # noqa: F401
    import configparser  # noqa: F401
    import fcntl  # noqa: F401
    import json  # noqa: F401
    import ntpath  # noqa: F401
    import pwd  # noqa: F401
    import re  # noqa: F401
    import shutil as _shutil  # noqa: F401
    import subprocess as _subprocess  # noqa: F401
    import typing  # noqa: F401
    import zipfile  # noqa: F401 - the launcher unpacks the payload with it
    import zlib  # noqa: F401

    import botocore.config  # noqa: F401
    import botocore.session  # noqa: F401

    "127.0.0.1".encode("idna")
    _share_botocore_caches()
    for path in preload:
        try:
            module = _preload_script(path)
            if os.path.basename(path) == "keyrotation_agent.py" and hasattr(module, "main"):
                _rehearse_agent(module)
        except Exception as exc:  # noqa: BLE001 - a preload is an optimization only
            sys.stderr.write(f"warm_python: preload {path} failed: {type(exc).__name__}: {exc}\n")
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None
    import gc

    gc.collect()
    gc.freeze()  # children do not touch (copy) the warm objects when they collect garbage


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "serve":
        sys.stderr.write("usage: warm_python.py serve SOCKET [--preload SCRIPT]...\n")
        return 2
    socket_path = argv[1]
    preload = [argv[i + 1] for i, a in enumerate(argv) if a == "--preload" and i + 1 < len(argv)]
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = ""  # not the sandbox package's directory: children set their own sys.path[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the agents through their shims
    warm_up(preload)
    job = serve(socket_path)  # returns in a forked child only
    signal.signal(signal.SIGINT, signal.default_int_handler)
    become(job)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
