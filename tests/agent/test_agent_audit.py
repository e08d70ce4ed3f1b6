"""The agent's audit action: reports which key id the profile holds, and changes nothing anywhere."""

from __future__ import annotations

from agent_support import Identity, Server, snapshot, write_credentials

OTHERS = b"[default]\naws_access_key_id = AKIAOTHEROTHEROTHER0\naws_secret_access_key = theirs\n"
HELD = b"[app]\naws_access_key_id = AKIAHELDHELDHELDHELD\naws_secret_access_key = s3cr3t-held-value\n"


def test_audit_reports_the_key_the_profile_holds_and_changes_no_byte(
    server: Server, identity: Identity
) -> None:
    # GIVEN the profile holds another key than the secret's current one
    write_credentials(server, OTHERS + HELD)
    before = snapshot(server.root)
    # WHEN the agent audits
    run = server.run(server.params(identity, Action="audit"))
    # THEN it reports the held key id, that it is not the expected one, never the secret, and nothing changed
    assert run.code == 0, run.stderr
    assert (run.result["action"], run.result["held"]) == ("audit", "key")
    assert run.result["access_key_id"] == "AKIAHELDHELDHELDHELD" and run.result["matches"] is False
    assert "s3cr3t-held-value" not in run.stdout + run.stderr and identity.secret_key not in run.stdout
    assert snapshot(server.root) == before


def test_audit_of_the_current_key_matches(server: Server, identity: Identity) -> None:
    assert server.run(server.params(identity)).code == 0  # a rotation wrote the current key
    before = snapshot(server.root)
    run = server.run(server.params(identity, Action="audit"))
    assert (run.result["held"], run.result["access_key_id"], run.result["matches"]) == (
        "key", identity.key_id, True)
    assert snapshot(server.root) == before


def test_audit_of_a_missing_file_or_profile_says_so(server: Server, identity: Identity) -> None:
    run = server.run(server.params(identity, Action="audit"))
    assert (run.code, run.result["held"]) == (0, "no_file")
    assert not server.path("/home/app/.aws").exists()
    write_credentials(server, OTHERS)
    run = server.run(server.params(identity, Action="audit"))
    assert (run.code, run.result["held"], run.result["access_key_id"]) == (0, "no_profile", None)
