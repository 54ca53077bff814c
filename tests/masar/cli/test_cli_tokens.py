"""The CLI's identities: `masar token issue`, MASAR_TOKEN, and the tokens the
local stack's network service issues the CLI for the role a command acts as."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from masar.cli import connect
from masar.cli import main as cli_main
from masar.platform.identity import Role, TokenIssuer, TokenVerifier
from tests.support_network import NetworkThread, bootstrap_client, network_settings


@pytest.fixture
def local_stack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A local stack's data dir, its network service (the token issuer) and
    the CLI's bootstrap client key; no key in the environment."""
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MASAR_TOKEN_SIGNING_KEY", raising=False)
    bootstrap_client(tmp_path)
    network = NetworkThread(network_settings(tmp_path)).start()
    monkeypatch.setenv("MASAR_NETWORK_ADDR", network.address)
    yield tmp_path
    network.stop()


def test_token_issue_through_the_cli(local_stack_env: Path, capsys) -> None:
    argv = ["token", "issue", "--role", "shelter_staff", "--org", "shl-1", "--ttl", "2h"]
    assert cli_main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    caller = TokenVerifier.from_env().verify(doc["token"])
    assert (caller.role, caller.org) == (Role.SHELTER_STAFF, "shl-1")
    assert cli_main(["--json", "token", "issue", "--role", "operator"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "operator"
    assert cli_main(["token", "issue", "--role", "shelter_staff"]) == 2  # no --org
    assert "org is required" in capsys.readouterr().err


def test_the_cli_acts_as_its_command_role_unless_given_a_token(
    local_stack_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenIssuer.from_env().verifier()  # the local stack's issuer file
    staff = connect.Identity(Role.LEGAL_AID, org="leg-prov-1")
    minted = verifier.verify(connect.token_source(staff).token())
    assert (minted.role, minted.org, minted.subject) == (
        Role.LEGAL_AID,
        "leg-prov-1",
        "cli-legal_aid",
    )
    assert minted.expires_at - minted.issued_at == connect.CLI_TOKEN_TTL

    own = TokenIssuer.from_env().issue(role=Role.COORDINATOR, region="oriental")
    monkeypatch.setenv("MASAR_TOKEN", own)
    assert connect.token_source(staff).token() == own
