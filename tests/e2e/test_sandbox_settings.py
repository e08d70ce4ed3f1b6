"""The sandbox's generated settings: any number of users fits one stack (users share server groups)."""

from __future__ import annotations

from pathlib import Path

from sandbox import synth


def test_one_group_per_user_by_default_with_the_demo_profile() -> None:
    settings = synth.sandbox_settings(3)
    assert [g["name"] for g in settings["server_groups"]] == ["g-svc-app1", "g-svc-app2", "g-svc-app3"]
    assert {u["profile"] for u in settings["users"]} == {synth.PROFILE}


def test_users_sharing_a_group_get_a_profile_each_in_the_same_file() -> None:
    settings = synth.sandbox_settings(7, users_per_group=3)
    assert [g["name"] for g in settings["server_groups"]] == ["g-1", "g-2", "g-3"]
    assert [u["server_group"] for u in settings["users"]] == ["g-1"] * 3 + ["g-2"] * 3 + ["g-3"]
    assert len({(u["server_group"], u["credentials_file"], u["profile"]) for u in settings["users"]}) == 7


def test_500_users_synthesize_without_lifting_the_cdk_resource_limit(tmp_path: Path) -> None:
    # GIVEN the bench's largest scheduled run: 500 users, as few per group as one stack allows
    per_group = synth.users_per_group_for(500)
    assert per_group == 3 and synth.users_per_group_for(200) == 1
    settings = synth.sandbox_settings(500, users_per_group=per_group)
    path = synth.write_settings(tmp_path / "settings.yaml", settings)
    # WHEN the real app synthesizes it with cdk.json's context (CloudFormation's 500-resource check on)
    assembly = synth.synthesize(path, tmp_path / "cdk.out")
    # THEN it fits: one role per group, no per-user resource
    assert len(assembly.resources) == 113 + len(settings["server_groups"]) == 113 + 167
    assert len(assembly.template["Outputs"]) == 167
