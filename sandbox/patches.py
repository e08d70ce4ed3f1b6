"""Where the sandbox's moto patches used to live; they are in the package `sandbox.moto` now.

Kept for the modules that still import from here (sandbox/fleet.py, sandbox/deploy.py): registry and
checks in `sandbox.moto.registry`, installation in `sandbox.moto.install`, the fleet protocol in
`sandbox.moto.ssm`, Run Command in `sandbox.moto.run_command`, Lambda in `sandbox.moto.lambda_runtime`.
New code imports from those modules.
"""

from sandbox.moto.install import MOTO_CONFIG, MOTO_VERSION, install, is_installed, uninstall
from sandbox.moto.lambda_runtime import (
    InjectedCrash,
    cleanup_lambda_code,
    inject_lambda_crash,
    lambda_hooks,
    set_log_group,
)
from sandbox.moto.registry import PatchError
from sandbox.moto.run_command import (
    MAX_INSTANCE_IDS,
    PLUGIN_OUTPUT_LIMIT,
    STDOUT_LIMIT,
    linux_shell_steps,
    parse_document,
)
from sandbox.moto.ssm import ManagedInstances, PluginResult, RunRequest, attach_fleet

__all__ = [
    "MAX_INSTANCE_IDS", "MOTO_CONFIG", "MOTO_VERSION", "PLUGIN_OUTPUT_LIMIT", "STDOUT_LIMIT", "InjectedCrash",
    "ManagedInstances", "PatchError", "PluginResult", "RunRequest", "attach_fleet", "cleanup_lambda_code",
    "inject_lambda_crash", "install", "is_installed", "lambda_hooks", "linux_shell_steps", "parse_document",
    "set_log_group", "uninstall",
]
