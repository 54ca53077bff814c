"""Audit anchors through the network service's real gRPC server: a service
anchors only its own chain, anchors only move forward, and a log rolled back
past its anchor fails `masar audit verify` (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from masar.cli.audit import audit_verify_main
from masar.platform import audit
from masar.platform.audit_anchor import AnchorKey, AuditAnchorer, read_anchors
from masar.platform.channels import StaticToken
from masar.platform.crypto import Keyring
from masar.platform.db import Database, new_metadata
from masar.platform.identity import Caller, Role
from masar.platform.process import start_sector
from masar.platform.settings import ServiceSettings
from masar.referral.anchoring import NetworkAnchorSink
from masar.v1 import intake_pb2_grpc
from masar.v1 import network_pb2 as pb
from services.intake.app import MIGRATIONS_DIR as INTAKE_MIGRATIONS
from services.intake.app import build_components as intake_components
from tests.conftest import free_port
from tests.services.intake.support import registration
from tests.services.network.helpers import anonymous, stub_as
from tests.support_auth import rightful_channel, token_for

NOW = datetime.now(UTC)
NOW_ACTOR = Caller(
    subject="u-officer",
    role=Role.INTAKE_OFFICER,
    org="assoc-7",
    region="fes-meknes",
    issued_at=NOW,
    expires_at=NOW + timedelta(hours=1),
)


def _intake_log(tmp_path, ring: Keyring, count: int) -> Database:
    metadata = new_metadata()
    audit.audit_tables(metadata)
    db = Database(f"sqlite:///{tmp_path / 'intake.db'}")
    metadata.create_all(db.engine)
    _append(db, ring, count)
    return db


def _append(db: Database, ring: Keyring, count: int) -> None:
    for _ in range(count):
        db.call(lambda s: audit.append(s, actor=NOW_ACTOR, action="case.read", keyring=ring))


def _head(db: Database) -> tuple[int, str]:
    head = db.call(audit.read_head)
    assert head is not None
    return head


def _anchored(running) -> list[int]:
    stored = read_anchors(running.process.database.engine)
    assert stored is not None
    return [a.sequence for a in stored["intake"]]


def _request(key: AnchorKey, seq: int, digest: str, service: str = "intake"):
    return pb.AnchorAuditHeadRequest(
        service=service,
        sequence=seq,
        head_hash=digest,
        key_id=key.key_id,
        signature=key.sign(seq, digest),
    )


async def _code(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_service_anchors_its_own_head_forward_only(network, tmp_path) -> None:
    ring = Keyring.generate("k1")
    key = AnchorKey.generate("intake")
    db = _intake_log(tmp_path, ring, 3)
    sink = NetworkAnchorSink(
        f"127.0.0.1:{network.process.port}", StaticToken(token_for(Role.SERVICE_INTAKE))
    )
    anchorer = AuditAnchorer(service="intake", database=db, key=key, sink=sink)
    try:
        assert await anchorer.anchor_now()
        stored = read_anchors(network.process.database.engine)
        assert stored is not None
        [anchor] = stored["intake"]
        head = _head(db)
        assert (anchor.sequence, anchor.head_hash, anchor.key_id) == (3, head[1], key.key_id)

        intake = stub_as(network, Role.SERVICE_INTAKE)
        # The same anchor again: a retry, answered with the stored one.
        again = await intake.AnchorAuditHead(_request(key, 3, head[1]))
        assert again.already_anchored and again.anchor.sequence == 3
        # Another hash at the same sequence, or an older head: refused.
        assert await _code(intake.AnchorAuditHead(_request(key, 3, "b" * 64))) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        assert await _code(intake.AnchorAuditHead(_request(key, 2, "c" * 64))) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        # Only its own chain, only a service.
        shelter = stub_as(network, Role.SERVICE_SHELTER)
        assert await _code(shelter.AnchorAuditHead(_request(key, 9, "d" * 64))) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        for role, kw in ((Role.COORDINATOR, {"region": "oriental"}), (Role.NETWORK_ADMIN, {})):
            person = stub_as(network, role, **kw)
            assert await _code(person.AnchorAuditHead(_request(key, 9, "d" * 64))) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
        assert await _code(anonymous(network).AnchorAuditHead(_request(key, 9, "d" * 64))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        # Well-formed requests only.
        bad = [
            _request(key, 9, "d" * 64, service="network"),
            _request(key, 0, "d" * 64),
            _request(key, 9, "D" * 64),
            pb.AnchorAuditHeadRequest(
                service="intake", sequence=9, head_hash="d" * 64, key_id=key.key_id
            ),
        ]
        for request in bad:
            assert await _code(intake.AnchorAuditHead(request)) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
        # Nothing of that was stored; the table refuses to be edited.
        assert _anchored(network) == [3]
        with (
            pytest.raises(DBAPIError, match="append-only"),
            network.process.database.engine.begin() as conn,
        ):
            conn.execute(text("UPDATE audit_anchors SET sequence = 1"))

        # Moving on: anchored again further along.
        _append(db, ring, 2)
        assert await anchorer.anchor_now()
        assert _anchored(network) == [3, 5]
    finally:
        await sink.aclose()
        db.dispose()


async def test_a_rolled_back_service_cannot_hide_it(network, tmp_path, database_url, capsys):
    ring = Keyring.generate("k1")
    db = _intake_log(tmp_path, ring, 2)
    with db.engine.connect() as conn:
        backup = dict(conn.execute(text("SELECT * FROM audit_head")).mappings().one())
    _append(db, ring, 3)
    env = {
        "MASAR_DATA_DIR": str(tmp_path),
        "MASAR_KEYRING": ",".join(
            f"{k}:{base64.b64encode(v).decode()}" for k, v in ring.keys.items()
        ),
        "MASAR_NETWORK_DATABASE_URL": database_url,
    }
    key = AnchorKey.from_env("intake", env)  # the local stack's key file
    sink = NetworkAnchorSink(
        f"127.0.0.1:{network.process.port}", StaticToken(token_for(Role.SERVICE_INTAKE))
    )
    anchorer = AuditAnchorer(service="intake", database=db, key=key, sink=sink)
    try:
        assert await anchorer.anchor_now()
        assert audit_verify_main(["--service", "intake"], environ=env) == 0
        capsys.readouterr()

        # Restored from a backup taken at entry 2.
        with db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
            conn.execute(text("DELETE FROM audit_log WHERE seq > 2"))
            conn.execute(
                text("UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac"),
                {k: backup[k] for k in ("seq", "hash", "mac")},
            )
        assert audit.verify(db.engine, keyring=ring).ok
        assert audit_verify_main(["--service", "intake", "--json"], environ=env) == 1
        captured = capsys.readouterr()
        report = json.loads(captured.out)["services"]["intake"]
        assert report["status"] == "tampered"
        assert "rolled_back" in {p["kind"] for p in report["problems"]}
        assert captured.err.startswith("masar audit verify: FAILED: intake (intake: rolled_back")

        # The service, rolled back, cannot anchor its older head over the newer one.
        _append(db, ring, 1)  # entry 3 again, another hash
        anchorer.anchored_seq = 0
        assert not await anchorer.anchor_now()
        head = _head(db)
        intake = stub_as(network, Role.SERVICE_INTAKE)
        assert await _code(intake.AnchorAuditHead(_request(key, head[0], head[1]))) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
    finally:
        await sink.aclose()
        db.dispose()


async def test_a_service_anchors_at_shutdown(network, tmp_path) -> None:
    """The intake process itself: its audit head reaches the network when it stops."""
    env = {
        "MASAR_DATA_DIR": str(tmp_path / "intake-data"),
        "MASAR_INTAKE_DATABASE_URL": f"sqlite:///{tmp_path / 'intake-service.db'}",
        "MASAR_INTAKE_ADDR": f"127.0.0.1:{free_port()}",
        "MASAR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # Temporal "down"
        "MASAR_NETWORK_ADDR": f"127.0.0.1:{network.process.port}",
    }
    settings = ServiceSettings.from_env("intake", env)
    process = await start_sector(settings, intake_components, INTAKE_MIGRATIONS, run_worker=False)
    channel = rightful_channel(f"127.0.0.1:{process.port}")
    try:
        await intake_pb2_grpc.IntakeServiceStub(channel).RegisterCase(registration())
    finally:
        await channel.close()
        head = process.database.call(audit.read_head)
        await process.stop()
    assert head is not None and head[0] >= 1
    anchors = read_anchors(network.process.database.engine)
    assert anchors is not None
    assert [(a.sequence, a.head_hash) for a in anchors["intake"]] == [head]
    key_file = tmp_path / "intake-data" / "audit-anchor-intake.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
