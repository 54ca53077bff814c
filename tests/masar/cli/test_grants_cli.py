"""`masar grant request|approve|refuse|revoke` and `masar grants` against a
real intake service (in-process, real gRPC, SQLite) with the real journey
worker on a Temporal dev server of the test's own, so that `masar case show`
reads the journey through the journey API as the CLI always does.

Each command acts as the signed-in person: every person here has her own
configuration directory with a session (as `masar login` stores it), and
the test switches people by switching XDG_CONFIG_HOME. A Rabat coordinator
asks for a Fès case; she cannot approve her own request, nor can a colleague
of her region; a coordinator of Fès approves it, and then the case reads
work for the requester — until she revokes the grant. A refused request
opens nothing; malformed input and nobody signed in are one line each."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from masar.cli import main as cli_main
from masar.cli.session import Session, SessionStore
from masar.platform.identity import Role
from tests.conftest import free_port
from tests.services.intake.journey_support import ORG_A, Bed, journey_bed
from tests.services.intake.support import FES, RABAT
from tests.support_auth import token_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NOTE = "GrantNote-she-arrived-at-the-oujda-centre"


class Cli:
    """`masar ...` in-process, as one signed-in person at a time."""

    def __init__(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        network_addr: str,
    ) -> None:
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.network_addr = network_addr

    def sign_in(self, subject: str, role: Role, org: str = "", region: str = "") -> None:
        """Her session, as `masar login` leaves it; she acts from now on."""
        home = self.tmp_path / "people" / subject
        now = datetime.now(UTC)
        SessionStore(home / "masar").save(
            Session(
                network_addr=self.network_addr,
                account_id=f"acc-{subject}",
                username=subject,
                role=role.value,
                organisation_id=org,
                region=region,
                access_token=token_for(role, org, region, subject=subject),
                access_token_expires_at=now + timedelta(hours=1),
                refresh_token="unused",
                refresh_token_expires_at=now + timedelta(hours=12),
            )
        )
        self.monkeypatch.setenv("XDG_CONFIG_HOME", str(home))

    def sign_out(self) -> None:
        self.monkeypatch.setenv("XDG_CONFIG_HOME", str(self.tmp_path / "people" / "nobody"))

    async def run(self, *argv: str) -> tuple[int, str, str]:
        """`masar ARGV` in a thread of its own (it runs its own event loop)."""
        self.monkeypatch.setattr("sys.stdin", io.StringIO(""))
        status = await asyncio.to_thread(cli_main, list(argv))
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    async def json(self, *argv: str) -> Any:
        status, out, err = await self.run(*argv, "--json")
        assert status == 0, err
        return json.loads(out)

    async def refused(self, *argv: str, exit_code: int = 1) -> str:
        """The command fails with one line on stderr (no traceback); that line."""
        status, out, err = await self.run(*argv)
        assert status == exit_code, (status, out, err)
        assert out == ""
        assert err.startswith("masar: ") and err.count("\n") == 1, err
        return err


@pytest.fixture
async def bed(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Bed]:
    async with journey_bed(tmp_path / "service", sqlite_url) as running:
        yield running


@pytest.fixture
def cli(
    bed: Bed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    network_addr = f"127.0.0.1:{free_port()}"  # nothing there: the sessions are fresh
    monkeypatch.delenv("MASAR_TOKEN", raising=False)
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path / "service"))
    monkeypatch.setenv("MASAR_INTAKE_ADDR", f"127.0.0.1:{bed.intake.running.process.port}")
    monkeypatch.setenv("MASAR_NETWORK_ADDR", network_addr)
    return Cli(tmp_path, capsys, monkeypatch, network_addr)


async def test_four_eyes_then_the_case_reads_work_for_the_requester(bed: Bed, cli: Cli) -> None:
    case_id = await bed.register("officer_a")  # held by ORG_A, in Fès

    # A Rabat coordinator: the Fès case is closed to her.
    cli.sign_in("coord-rabat-1", Role.COORDINATOR, region=RABAT)
    assert "permission_denied" in await cli.refused("case", "show", case_id)

    requested = await cli.json(
        "grant",
        "request",
        case_id,
        "--reason",
        "survivor_relocated",
        "--note",
        NOTE,
        "--hours",
        "2",
    )
    assert requested["status"] == "pending"
    assert requested["case_id"] == case_id and requested["case_region"] == FES
    assert requested["requested_by"] == "coord-rabat-1"
    assert requested["reason"] == "survivor_relocated" and requested["ttl_seconds"] == 7200
    assert requested["granted_at"] is None and requested["expires_at"] is None
    assert NOTE not in json.dumps(requested)
    grant_id = requested["grant_id"]

    # Asked is not approved, and she cannot approve her own request.
    assert "permission_denied" in await cli.refused("case", "show", case_id)
    own = await cli.refused("grant", "approve", grant_id)
    assert "permission_denied" in own and "never by its requester" in own
    assert "signed in as coord-rabat-1" in own
    # Nor can a colleague of her region: not the case's region.
    cli.sign_in("coord-rabat-2", Role.COORDINATOR, region=RABAT)
    assert "permission_denied" in await cli.refused("grant", "approve", grant_id)

    # A second coordinator, of the case's region, sees the request and approves it.
    cli.sign_in("coord-fes-1", Role.COORDINATOR, region=FES)
    listed = await cli.json("grants", "--case", case_id)
    assert [(g["grant_id"], g["status"]) for g in listed] == [(grant_id, "pending")]
    approved = await cli.json("grant", "approve", grant_id)
    assert approved["status"] == "active" and approved["decided_by"] == "coord-fes-1"
    window = datetime.fromisoformat(approved["expires_at"]) - datetime.fromisoformat(
        approved["granted_at"]
    )
    assert window == timedelta(hours=2)
    # Decided once.
    assert "failed_precondition" in await cli.refused("grant", "approve", grant_id)

    # Now the case reads work for the requester — for her alone.
    cli.sign_in("coord-rabat-1", Role.COORDINATOR, region=RABAT)
    shown = await cli.json("case", "show", case_id)
    assert shown["case_id"] == case_id and shown["region"] == FES
    status, out, err = await cli.run("case", "show", case_id)
    assert status == 0 and f"case {case_id}" in out, err
    mine = await cli.json("grants")
    assert [(g["grant_id"], g["status"]) for g in mine] == [(grant_id, "active")]
    cli.sign_in("coord-rabat-2", Role.COORDINATOR, region=RABAT)
    assert "permission_denied" in await cli.refused("case", "show", case_id)

    # Its holder ends it: closed to her again.
    cli.sign_in("coord-rabat-1", Role.COORDINATOR, region=RABAT)
    status, out, err = await cli.run("grant", "revoke", grant_id)
    assert status == 0 and f"emergency grant {grant_id} revoked" in out, err
    assert "permission_denied" in await cli.refused("case", "show", case_id)
    (revoked,) = await cli.json("grants", "--status", "revoked")
    assert revoked["grant_id"] == grant_id and revoked["revoked_by"] == "coord-rabat-1"

    # Every step is in intake's audit log, with who acted.
    entries = [(e.action, e.actor, e.target) for e in bed.audit_of(case_id)]
    assert ("emergency_access.requested", "coord-rabat-1", grant_id) in entries
    assert ("emergency_access.approved", "coord-fes-1", grant_id) in entries
    assert ("emergency_access.revoked", "coord-rabat-1", grant_id) in entries
    assert ("journey.read", "coord-rabat-1", grant_id) in entries


async def test_a_refused_request_opens_nothing_and_mistakes_are_one_line(
    bed: Bed, cli: Cli
) -> None:
    case_id = await bed.register("officer_a")

    cli.sign_in("coord-rabat-3", Role.COORDINATOR, region=RABAT)
    status, out, err = await cli.run("grant", "request", case_id, "--reason", "imminent_danger")
    assert status == 0, err
    assert "asked" in out and "for 3 h from its approval" in out
    assert "masar grant approve egr-" in out
    (grant_id,) = [w for w in out.split() if w.startswith("egr-")][:1]

    # The supervisor of the organisation holding the case refuses it.
    cli.sign_in("supervisor-a", Role.SUPERVISOR, org=ORG_A, region=FES)
    status, out, err = await cli.run("grant", "refuse", grant_id)
    assert status == 0 and f"emergency grant {grant_id} refused" in out, err
    (refused,) = await cli.json("grants", "--status", "refused")
    assert refused["grant_id"] == grant_id and refused["decided_by"] == "supervisor-a"
    cli.sign_in("coord-rabat-3", Role.COORDINATOR, region=RABAT)
    assert "permission_denied" in await cli.refused("case", "show", case_id)
    # Refused is final: nothing to approve or revoke.
    cli.sign_in("coord-fes-2", Role.COORDINATOR, region=FES)
    assert "failed_precondition" in await cli.refused("grant", "approve", grant_id)

    # Only coordinators ask; their own region needs no grant.
    cli.sign_in("officer-a", Role.INTAKE_OFFICER, org=ORG_A, region=FES)
    ask = ("grant", "request", case_id, "--reason", "court_request")
    assert "permission_denied" in await cli.refused(*ask)
    cli.sign_in("coord-fes-2", Role.COORDINATOR, region=FES)
    assert "no grant is needed" in await cli.refused(*ask)

    # Malformed input is refused before anything is asked.
    for argv in (
        ("grant", "approve", "egr-nothex"),
        ("grant", "revoke", "not-a-grant"),
        ("grant", "request", case_id, "--reason", "court_request", "--hours", "13"),
        ("grant", "request", case_id, "--reason", "court_request", "--hours", "-1"),
        ("grants", "--case", "not a case"),
    ):
        await cli.refused(*argv, exit_code=2)
    # Nobody signed in: the development shortcut is nobody, four eyes are people.
    cli.sign_out()
    for command in (ask, ("grants",), ("grant", "approve", grant_id)):
        assert "sign in with `masar login`" in await cli.refused(*command)
    # No grant was made by any of it.
    cli.sign_in("coord-fes-2", Role.COORDINATOR, region=FES)
    assert [g["grant_id"] for g in await cli.json("grants", "--case", case_id)] == [grant_id]
    status, out, err = await cli.run("grants")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split()[:4] == ["GRANT", "CASE", "REGION", "REQUESTED"]
    assert row.split()[:4] == [grant_id, case_id, FES, "coord-rabat-3"] and "refused" in row
