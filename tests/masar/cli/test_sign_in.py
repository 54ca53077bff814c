"""`masar login`, `logout`, `password change`, `org ...` and `account ...`
against the real network service on a free port (in-process, real gRPC, on
SQLite and on PostgreSQL when MASAR_TEST_POSTGRES_URL is set): the session
file (mode 0600 in a 0700 directory under $XDG_CONFIG_HOME/masar), every
command acting as the signed-in person, an expired access token renewed with
the refresh token, a disabled account's session ended in one line, and the
development shortcut used only without a sign-in."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

from masar.cli import connect
from masar.cli import main as cli_main
from masar.cli.session import SESSION_FILE, SessionStore
from masar.platform.identity import Role, TokenVerifier
from masar.platform.settings import CliSettings
from tests.services.harness import RunningSector
from tests.services.network.conftest import CHEAP_PASSWORDS, NO_THROTTLE, network_service

NEW_PASSWORD = "a long and private passphrase"


@pytest.fixture
async def network(tmp_path: Path, database_url: str) -> AsyncIterator[RunningSector]:
    """The network service on SQLite, and on PostgreSQL when configured."""
    async with network_service(
        tmp_path / "service",
        database_url,
        policy=NO_THROTTLE,
        passwords=CHEAP_PASSWORDS,
    ) as running:
        yield running


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network: RunningSector) -> Path:
    """The CLI's environment: the service's address, a config dir of its own;
    MASAR_TOKEN_SIGNING_KEY (tests/conftest.py) is the local stack's key."""
    (tmp_path / "service").mkdir(exist_ok=True)
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path / "service"))
    monkeypatch.setenv("MASAR_NETWORK_ADDR", f"127.0.0.1:{network.process.port}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    async def run(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        """`masar ARGV` in a thread of its own (it runs its own event loop)."""
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        status = await asyncio.to_thread(cli_main, list(argv))
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    async def json(self, *argv: str, stdin: str = "") -> Any:
        status, out, err = await self.run(*argv, "--json", stdin=stdin)
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


async def _org_and_officer(cli: Cli) -> tuple[dict[str, Any], dict[str, Any]]:
    """An association and an intake officer, made with the local shortcut."""
    org = await cli.json(
        "org",
        "create",
        "--name",
        "Association Amal",
        "--kind",
        "association",
        "--region",
        "fes-meknes",
        "--sectors",
        "case_management,psychosocial",
    )
    officer = await cli.json(
        "account",
        "create",
        "--org",
        org["organisation_id"],
        "--role",
        "intake_officer",
        "--username",
        "khadija.a",
        "--display-name",
        "Khadija Amrani",
        "--email",
        "khadija.a@example.org",
    )
    return org, officer


async def test_login_stores_a_private_session_and_commands_act_as_her(
    cli: Cli, config_home: Path
) -> None:
    org, officer = await _org_and_officer(cli)
    assert officer["first_password"] and officer["totp_uri"] is None

    # A first password must be changed before signing in: one line says how.
    status, _, err = await cli.run(
        "login", "--username", "khadija.a", "--password-stdin", stdin=officer["first_password"]
    )
    assert status == 1 and "masar password change --username khadija.a" in err
    assert len(err.strip().splitlines()) == 1
    assert not (config_home / "masar" / SESSION_FILE).exists()

    changed = await cli.json(
        "password",
        "change",
        "--username",
        "khadija.a",
        "--password-stdin",
        stdin=f"{officer['first_password']}\n{NEW_PASSWORD}\n",
    )
    assert changed["account_id"] == officer["account_id"]
    await cli.run("logout")

    # A wrong password and an unknown account read alike.
    wrong = await cli.run("login", "--username", "khadija.a", "--password-stdin", stdin="nope")
    unknown = await cli.run("login", "--username", "nobody.here", "--password-stdin", stdin="nope")
    assert wrong[0] == unknown[0] == 1 and wrong[2] == unknown[2]

    signed = await cli.json(
        "login", "--username", "khadija.a", "--password-stdin", stdin=NEW_PASSWORD + "\n"
    )
    assert (signed["role"], signed["organisation_id"], signed["region"]) == (
        "intake_officer",
        org["organisation_id"],
        "fes-meknes",
    )
    session_file = config_home / "masar" / SESSION_FILE
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(session_file.parent.stat().st_mode) == 0o700
    assert NEW_PASSWORD not in session_file.read_text()

    # Every command now presents her token: the service's own, naming her.
    settings = CliSettings.from_env()
    source = connect.acting_token(connect.Identity(Role.COORDINATOR, region="oriental"), settings)
    caller = TokenVerifier.from_env().verify(await asyncio.to_thread(source.token))
    assert (caller.subject, caller.role, caller.org) == (
        officer["account_id"],
        Role.INTAKE_OFFICER,
        org["organisation_id"],
    )
    assert (await cli.json("whoami"))["acts_as"] == "signed_in"
    # An intake officer manages no accounts: refused, as her, in one line.
    status, _, err = await cli.run("account", "list")
    assert status == 1 and "permission_denied" in err and "signed in as khadija.a" in err

    # Signed out, the local shortcut acts again.
    assert (await cli.json("logout"))["signed_out"] is True
    assert not session_file.exists()
    assert (await cli.json("whoami"))["acts_as"] == "local_stack"
    listed = await cli.json("account", "list", "--org", org["organisation_id"])
    assert [a["username"] for a in listed] == ["khadija.a"]


async def test_an_expired_access_token_is_renewed_and_a_disabled_account_is_out(
    cli: Cli, config_home: Path
) -> None:
    _, officer = await _org_and_officer(cli)
    await cli.json(
        "password",
        "change",
        "--username",
        "khadija.a",
        "--password-stdin",
        stdin=f"{officer['first_password']}\n{NEW_PASSWORD}\n",
    )
    store = SessionStore(config_home / "masar")
    first = store.load()
    assert first is not None
    # Her access token has expired: the next command renews it first.
    past = datetime.now(UTC) - timedelta(minutes=1)
    store.save(dataclasses.replace(first, access_token_expires_at=past))
    own = await cli.json("account", "show", officer["account_id"])
    assert own["username"] == "khadija.a"
    renewed = store.load()
    assert renewed is not None and renewed.refresh_token != first.refresh_token
    assert renewed.access_token != first.access_token and renewed.access_token_expires_at > past
    caller = TokenVerifier.from_env().verify(renewed.access_token)
    assert caller.subject == officer["account_id"]

    # Her coordinator disables her account (the shortcut acts for the coordinator
    # in another config dir): her next renewal is refused and the session is gone.
    other = config_home.parent / "coordinator-config"
    cli.monkeypatch.setenv("XDG_CONFIG_HOME", str(other))
    disabled = await cli.json(
        "account", "disable", officer["account_id"], "--reason", "left_organisation"
    )
    assert disabled["status"] == "disabled"
    cli.monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    store.save(dataclasses.replace(renewed, access_token_expires_at=past))
    status, _, err = await cli.run("account", "show", officer["account_id"])
    assert status == 1
    assert err.strip().splitlines() == [
        "masar: your session has ended (refused by the network service): "
        "sign in again with `masar login`"
    ]
    assert store.load() is None


async def test_coordinators_sign_in_with_a_code_and_manage_their_region(
    cli: Cli, config_home: Path
) -> None:
    org, officer = await _org_and_officer(cli)
    coordinator = await cli.json(
        "account",
        "create",
        "--org",
        org["organisation_id"],
        "--role",
        "coordinator",
        "--username",
        "nadia.coord",
        "--display-name",
        "Nadia El Idrissi",
        "--email",
        "nadia@example.org",
    )
    secret = pyotp.parse_uri(coordinator["totp_uri"]).secret
    totp = pyotp.TOTP(secret)
    # Without the code she is refused, as for any wrong credential.
    status, _, err = await cli.run(
        "password",
        "change",
        "--username",
        "nadia.coord",
        "--password-stdin",
        stdin=f"{coordinator['first_password']}\n{NEW_PASSWORD}\n",
    )
    assert status == 1 and "sign-in failed" in err
    await cli.json(
        "password",
        "change",
        "--username",
        "nadia.coord",
        "--password-stdin",
        "--totp-code",
        totp.now(),
        stdin=f"{coordinator['first_password']}\n{NEW_PASSWORD}\n",
    )
    # As her: a password reset of her region's officer, then an organisation.
    reset = await cli.json("account", "reset-password", officer["account_id"])
    assert reset["first_password"] and reset["password_change_required"]
    shown = await cli.json("account", "show", officer["account_id"])
    assert shown["display_name"] == "Khadija Amrani"
    suspended = await cli.json("org", "suspend", org["organisation_id"])
    assert suspended["status"] == "suspended"
    assert (await cli.json("org", "reinstate", org["organisation_id"]))["status"] == "active"
    # Another region's organisation is not hers to create.
    status, _, err = await cli.run(
        "org",
        "create",
        "--name",
        "Association Oujda",
        "--kind",
        "association",
        "--region",
        "oriental",
        "--sectors",
        "case_management",
    )
    assert status == 1 and "permission_denied" in err and len(err.strip().splitlines()) == 1


async def test_a_bad_flag_is_one_line(cli: Cli, config_home: Path) -> None:
    status, _, err = await cli.run(
        "org", "create", "--name", "X", "--kind", "association", "--region", "fes-meknes",
        "--sectors", "gardening",
    )  # fmt: skip
    assert status == 2 and err.strip().splitlines() == [
        "masar: --sectors: unknown value 'gardening' (choose from case_management, shelter, "
        "legal, employment, health, psychosocial)"
    ]
