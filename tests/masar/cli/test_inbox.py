"""`masar inbox [--all] [--watch] [--json]` and `masar inbox ack ID` against a
real network service (in-process, real gRPC, SQLite), as the person her
token names: she sees her own notifications (ids and codes, never personal
data), acknowledges one (once: again says so), `--watch` streams a new one
within a second until Ctrl-C; nobody signed in, or an unknown id, is one
line."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from masar.cli import main as cli_main
from masar.contract.notify import NotifyKind
from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from tests.services.network.notify_support import (
    CANARY_ALIAS,
    STAFF_NAME,
    Network,
    Staff,
    event,
    notify,
    notify_service,
    small_network,
)
from tests.support_auth import token_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def token_of(staff: Staff) -> str:
    account = staff.account
    role = Role(pb.AccountRole.Name(account.role).removeprefix("ACCOUNT_ROLE_").lower())
    return token_for(role, account.organisation_id, account.region, subject=account.account_id)


class Cli:
    def __init__(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, addr: str
    ) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.addr = addr

    def act_as(self, staff: Staff | None) -> None:
        if staff is None:
            self.monkeypatch.delenv("MASAR_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("MASAR_TOKEN", token_of(staff))

    async def run(self, *argv: str) -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(""))
        status = await asyncio.to_thread(cli_main, list(argv))
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    async def json(self, *argv: str) -> Any:
        status, out, err = await self.run(*argv, "--json")
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
async def net(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Network]:
    async with notify_service(tmp_path / "network", sqlite_url, smtp_url=None) as running:
        yield await small_network(running)


@pytest.fixture
def cli(
    net: Network,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    addr = f"127.0.0.1:{net.running.process.port}"
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nobody"))
    monkeypatch.setenv("MASAR_NETWORK_ADDR", addr)
    return Cli(capsys, monkeypatch, addr)


async def test_her_inbox_acknowledged_once(net: Network, cli: Cli) -> None:
    new = event(
        NotifyKind.NEW_REFERRAL,
        provider_organisation_id=net.shelter.organisation_id,
        holding_organisation_id=net.association.organisation_id,
    )
    escalation = event(NotifyKind.ESCALATION, case_id=new.case_id, referral_id=new.referral_id)
    told = await notify(net.running, new)
    await notify(net.running, escalation)

    staff = net.shelter_staff[0]
    cli.act_as(staff)
    [mine] = (await cli.json("inbox"))["notifications"]
    assert mine["notification_id"] == told.notification_id
    assert (mine["kind"], mine["case_id"], mine["referral_id"]) == (
        "new_referral",
        new.case_id,
        new.referral_id,
    )
    assert mine["sector"] == "shelter" and mine["acknowledged"] is False
    assert mine["console_url"].endswith(f"/cases/{new.case_id}")
    status, out, _ = await cli.run("inbox")
    assert status == 0 and told.notification_id in out and "new_referral" in out
    assert STAFF_NAME not in out and CANARY_ALIAS not in out

    acked = await cli.json("inbox", "ack", told.notification_id)
    assert acked["notification"]["acknowledged"] is True and not acked["already_acknowledged"]
    assert (await cli.json("inbox", "ack", told.notification_id))["already_acknowledged"]
    status, out, _ = await cli.run("inbox", "ack", told.notification_id)
    assert status == 0 and "already acknowledged" in out
    # Acknowledged: out of the default view, still there with --all.
    assert (await cli.json("inbox"))["notifications"] == []
    [seen] = (await cli.json("inbox", "--all"))["notifications"]
    assert seen["acknowledged"] is True and seen["acknowledged_at"]
    status, out, _ = await cli.run("inbox")
    assert status == 0 and "Nothing waiting" in out

    # A coordinator sees the escalation, not the staff's referral.
    cli.act_as(net.coordinators[0])
    [theirs] = (await cli.json("inbox"))["notifications"]
    assert theirs["kind"] == "escalation"
    # Someone else's notification is not hers to acknowledge.
    status, out, err = await cli.run("inbox", "ack", told.notification_id)
    assert status != 0 and out == "" and err.startswith("masar: network: ")
    assert err.count("\n") == 1


async def test_nobody_signed_in_is_one_line(net: Network, cli: Cli) -> None:
    cli.act_as(None)
    status, out, err = await cli.run("inbox")
    assert status == 1 and out == ""
    assert err.startswith("masar: the inbox is a person's") and err.count("\n") == 1


async def test_watch_streams_a_new_one_within_a_second(
    net: Network, cli: Cli, tmp_path: Path
) -> None:
    staff = net.shelter_staff[1]
    waiting = event(NotifyKind.NEW_REFERRAL, provider_organisation_id=net.shelter.organisation_id)
    await notify(net.running, waiting)
    env = {
        **os.environ,
        "MASAR_TOKEN": token_of(staff),
        "MASAR_NETWORK_ADDR": cli.addr,
        "MASAR_DATA_DIR": str(tmp_path / "cli-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "nobody"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "masar.cli",
        "inbox",
        "--watch",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
        assert first["case_id"] == waiting.case_id  # the backlog first
        new = event(
            NotifyKind.REMINDER, rung=1, provider_organisation_id=net.shelter.organisation_id
        )
        sent = time.monotonic()
        await notify(net.running, new)
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=5)
        assert time.monotonic() - sent < 1.0
        streamed = json.loads(line)
        assert (streamed["kind"], streamed["case_id"]) == ("reminder", new.case_id)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 130
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
