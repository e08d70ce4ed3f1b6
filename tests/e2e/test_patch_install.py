"""Installing the moto patches: reversible, and loud when moto changes under them."""

from __future__ import annotations

import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.ssm.models import SimpleSystemManagerBackend

from sandbox.moto import install, registry


def test_install_is_reversible() -> None:
    original_invoke = LambdaSimpleBackend.invoke
    install.install()
    try:
        assert LambdaSimpleBackend.invoke is not original_invoke
        assert hasattr(SimpleSystemManagerBackend, "list_command_invocations")
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
    finally:
        install.uninstall()
    assert LambdaSimpleBackend.invoke is original_invoke
    assert not hasattr(SimpleSystemManagerBackend, "list_command_invocations")
    assert default_user_config["lambda"]["use_docker"] is True


def test_install_fails_loudly_when_moto_gains_what_a_patch_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleSystemManagerBackend, "describe_instance_information", lambda self: [],
                        raising=False)
    with pytest.raises(registry.PatchError, match="describe_instance_information"):
        install.install()
    assert not install.is_installed()


def test_install_fails_loudly_when_a_patched_name_disappears(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(SimpleSystemManagerBackend, "send_command")
    with pytest.raises(registry.PatchError, match="send_command"):
        install.install()


def test_install_refuses_another_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto

    monkeypatch.setattr(moto, "__version__", "5.3.0")
    with pytest.raises(registry.PatchError, match=r"5\.3\.0"):
        install.install()
