"""The network service killed (SIGKILL) at the worst point of a delivery —
after the SMTP server accepted an e-mail, before the delivery's commit —
then restarted: every recipient has the notification once in her inbox, and
the SMTP receiver got each e-mail once, or twice with the same Message-ID.

The notification comes through Temporal as the journey will send it: a small
workflow runs the activity `network.notify` on `masar-network`, served by
the network process's own worker. The crash point is a test-only entry point
wrapping the service's factory with an `after_send` hook (no production
switch).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.procs import keyring_spec
from masar.contract.notify import (
    NETWORK_NOTIFY,
    NETWORK_TASK_QUEUE,
    NotifyEvent,
    NotifyKind,
    NotifyResult,
)
from masar.platform.crypto import process_keyring
from masar.platform.identity import Role
from masar.platform.settings import TemporalSettings
from masar.platform.temporal import connect_temporal
from masar.v1 import network_pb2 as pb
from masar.v1 import network_pb2_grpc
from tests.conftest import DevServer, free_port
from tests.services.network.notify_support import add_staff, smtp_server
from tests.support_auth import authed_channel, token_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FES = "fes-meknes"

# Runs the network service like `python -m services.network`, with short
# delivery delays and a SIGKILL right after the first e-mail is accepted.
LAUNCHER = textwrap.dedent(
    """
    import functools, os, signal, sys
    from datetime import timedelta
    from pathlib import Path

    from masar.platform.process import run_sector_main
    from services.network.app import MIGRATIONS_DIR, build_components
    from services.network.audience import DeliveryPolicy

    marker = Path(sys.argv[1])

    def crash(channel, delivery_id):
        if channel == "email" and not marker.exists():
            marker.write_text(delivery_id)
            os.kill(os.getpid(), signal.SIGKILL)

    policy = DeliveryPolicy(
        base=timedelta(milliseconds=300),
        cap=timedelta(seconds=1),
        lease=timedelta(seconds=3),
        poll=timedelta(milliseconds=200),
    )
    factory = functools.partial(build_components, delivery=policy, after_send=crash)
    run_sector_main("network", factory, MIGRATIONS_DIR)
    """
)


@workflow.defn(name="NotifyProbe", sandboxed=False)
class NotifyProbe:
    """What the journey will do: one activity call per event."""

    @workflow.run
    async def run(self, event: NotifyEvent) -> NotifyResult:
        return await workflow.execute_activity(
            NETWORK_NOTIFY,
            event,
            task_queue=NETWORK_TASK_QUEUE,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=500),
                maximum_interval=timedelta(seconds=1),
            ),
            result_type=NotifyResult,
        )


class NetworkProcess:
    def __init__(self, tmp_path: Path, temporal: str, smtp_url: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.script = tmp_path / "launch_network.py"
        self.script.write_text(LAUNCHER)
        self.marker = tmp_path / "crashed-after"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MASAR_DATA_DIR": str(tmp_path / "data"),
            "MASAR_NETWORK_ADDR": f"127.0.0.1:{self.port}",
            "MASAR_NETWORK_METRICS_PORT": str(free_port()),
            "MASAR_TEMPORAL_ADDRESS": temporal,
            "MASAR_KEYRING": keyring_spec(process_keyring()),
            "MASAR_SMTP_URL": smtp_url,
            "MASAR_SMTP_FROM": "Masar <alerts@masar.test>",
            "MASAR_LOG_FORMAT": "text",
            "OTEL_TRACES_EXPORTER": "none",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.tmp_path / "network.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), str(self.marker)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()

    async def ready(self, within: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            channel = authed_channel(self.address, Role.NETWORK_ADMIN)
            try:
                stub = network_pb2_grpc.NetworkServiceStub(channel)
                await stub.ListOrganisations(pb.ListOrganisationsRequest(), timeout=2)
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(self.log()) from None
                await asyncio.sleep(0.3)
            finally:
                await channel.close()

    def log(self) -> str:
        path = self.tmp_path / "network.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def test_a_crash_between_smtp_acceptance_and_commit(tmp_path):
    server = DevServer(free_port())
    network: NetworkProcess | None = None
    channels = []
    try:
        with smtp_server() as smtp:
            network = NetworkProcess(tmp_path, server.address, smtp.url)
            network.start()
            await network.ready()

            root = authed_channel(network.address, Role.NETWORK_ADMIN)
            channels.append(root)
            admin = network_pb2_grpc.NetworkServiceStub(root)
            shelter = (
                await admin.CreateOrganisation(
                    pb.CreateOrganisationRequest(
                        name="Dar Amane",
                        kind=pb.ORGANISATION_KIND_SHELTER_OPERATOR,
                        region=FES,
                        languages=[pb.SPOKEN_LANGUAGE_ARABIC],
                        sectors=[pb.SERVED_SECTOR_SHELTER],
                        idempotency_key=secrets.token_hex(8),
                    )
                )
            ).organisation
            regional = authed_channel(network.address, Role.COORDINATOR, region=FES)
            channels.append(regional)
            coordinator = network_pb2_grpc.NetworkServiceStub(regional)
            staff = [
                await add_staff(coordinator, shelter, pb.ACCOUNT_ROLE_SHELTER_STAFF, language)
                for language in (pb.PREFERRED_LANGUAGE_AR, pb.PREFERRED_LANGUAGE_FR)
            ]

            client = await connect_temporal(
                TemporalSettings(address=server.address, namespace="default")
            )
            event = NotifyEvent(
                kind=NotifyKind.NEW_REFERRAL,
                idempotency_key=f"case-{secrets.token_hex(4)}:ref-1:new",
                case_id=f"case-{secrets.token_hex(6)}",
                region=FES,
                referral_id=f"ref-{secrets.token_hex(6)}",
                sector="shelter",
                provider_organisation_id=shelter.organisation_id,
                deadline=datetime.now(UTC) + timedelta(hours=4),
            )
            async with Worker(
                client,
                task_queue="notify-probe",
                workflows=[NotifyProbe],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                handle = await client.start_workflow(
                    NotifyProbe.run,
                    event,
                    id=f"probe-{secrets.token_hex(4)}",
                    task_queue="notify-probe",
                )
                # The first e-mail is accepted, then the process dies before its commit.
                assert network.proc is not None
                code = await asyncio.to_thread(network.proc.wait, 60)
                assert code == -signal.SIGKILL, network.log()
                crashed = network.marker.read_text()
                assert len(smtp.raw) >= 1

                network.start()
                await network.ready()
                result = await handle.result()
                assert result.recipients == 2 and not result.undelivered

                async def delivered() -> bool:
                    ids = {m["Message-ID"] for m in smtp.parsed()}
                    return (
                        len(ids) == 2
                        and f"<{crashed}@masar.test>" in ids
                        and (
                            Counter(m["Message-ID"] for m in smtp.parsed())[
                                f"<{crashed}@masar.test>"
                            ]
                            == 2
                        )
                    )

                deadline = asyncio.get_running_loop().time() + 30
                while not await delivered():
                    assert asyncio.get_running_loop().time() < deadline, network.log()
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)

            # Each e-mail once, or twice with the same Message-ID (the crashed one).
            # (The other e-mail, sent at the same moment, may have been
            # accepted before the crash too.)
            counts = Counter(m["Message-ID"] for m in smtp.parsed())
            assert len(counts) == 2 and set(counts.values()) <= {1, 2}
            assert counts[f"<{crashed}@masar.test>"] == 2
            for person in staff:
                assert len({m["Message-ID"] for m in smtp.to(person.email)}) == 1

            # Each recipient has it once in her inbox, its delivery state shows both attempts.
            for person in staff:
                channel = authed_channel(
                    network.address,
                    token=token_for(
                        Role.SHELTER_STAFF,
                        shelter.organisation_id,
                        FES,
                        subject=person.account_id,
                    ),
                )
                channels.append(channel)
                stub = network_pb2_grpc.NetworkServiceStub(channel)
                listed = await stub.ListNotifications(pb.ListNotificationsRequest())
                assert [n.case_id for n in listed.notifications] == [event.case_id]
                detail = await stub.GetNotification(
                    pb.GetNotificationRequest(notification_id=result.notification_id)
                )
                deliveries = {d.delivery_id: d for r in detail.recipients for d in r.deliveries}
                assert all(d.status == pb.DELIVERY_STATUS_SENT for d in deliveries.values())
                assert deliveries[crashed].attempts == 2
    finally:
        for channel in channels:
            await channel.close()
        if network is not None:
            network.stop()
        server.stop()
