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


def test_the_warm_interpreters_and_the_benchmarks_botocore_patches_refuse_another_botocore(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore
    from botocore import loaders
    from botocore.client import BaseClient

    from bench.counting import ApiCounter
    from sandbox.moto import botocore_caches

    # GIVEN a botocore other than the one the patches were written for
    loader_init, make_api_call = vars(loaders.Loader)["__init__"], vars(BaseClient)["_make_api_call"]
    monkeypatch.setattr(botocore, "__version__", "1.99.0")
    # WHEN the warm interpreter's caches or the benchmark's counting are applied
    # THEN both refuse, naming the version, and botocore is left as it was
    with pytest.raises(registry.PatchError, match=r"botocore 1\.44\.5, found 1\.99\.0"):
        registry.apply(botocore_caches.patches())
    with pytest.raises(registry.PatchError, match=r"1\.99\.0"), ApiCounter():
        pass
    assert vars(loaders.Loader)["__init__"] is loader_init
    assert vars(BaseClient)["_make_api_call"] is make_api_call


def test_a_fault_refuses_a_moto_that_gained_what_it_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.iam.responses import IamResponse
    from moto.secretsmanager.responses import SecretsManagerResponse

    from sandbox import faults

    # GIVEN a moto whose Secrets Manager resolves request resources itself
    monkeypatch.setattr(SecretsManagerResponse, "_determine_resource", lambda self: "*", raising=False)
    iam_resource = vars(IamResponse)["_determine_resource"]
    # WHEN IAM enforcement is switched on THEN it refuses before changing anything
    with pytest.raises(registry.PatchError, match="SecretsManagerResponse._determine_resource"), \
            faults.enforce_iam():
        pass
    assert vars(IamResponse)["_determine_resource"] is iam_resource
