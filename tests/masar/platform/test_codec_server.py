"""`masar codec-server`: Temporal's remote codec protocol, for coordinators only,
and only for the journeys each could read through intake's API."""

from __future__ import annotations

import base64
import functools
import json
import secrets
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from concurrent import futures
from datetime import UTC, datetime, timedelta
from email.message import Message

import grpc
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.converter import DataConverter

from masar.cli.codec import IntakeCaseAccess, codec_server_main
from masar.platform import audit
from masar.platform.codec import WORKFLOW_ID_METADATA, encrypt_payload
from masar.platform.codec_server import (
    ACTION_DECODE,
    ACTION_DECODE_REFUSED,
    ACTION_ENCODE,
    CodecLimits,
    CodecServer,
)
from masar.platform.crypto import Keyring, install_keyring
from masar.platform.db import Database
from masar.platform.errors import PermissionDenied
from masar.platform.identity import Caller, Role, TokenIssuer, TokenVerifier
from masar.platform.temporal import client_options
from masar.v1 import intake_pb2, intake_pb2_grpc

UI = "http://localhost:8233"
FES = "fes-meknes"
ORIENTAL = "oriental"
FES_CASE = "case-fes-0001"
ORIENTAL_CASE = "case-ori-0002"


class RegionalAccess:
    """What intake decides, in memory: her region's cases, or a granted one."""

    def __init__(self, regions: dict[str, str]) -> None:
        self.regions = regions
        self.grants: set[tuple[str, str]] = set()
        self.asked: list[tuple[str, str]] = []

    async def check(self, caller: Caller, token: str, case_id: str) -> None:
        self.asked.append((caller.subject, case_id))
        if self.regions.get(case_id) == caller.region:
            return
        if (caller.subject, case_id) in self.grants:
            return
        raise PermissionDenied("not hers")

    async def aclose(self) -> None:
        pass


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer.generate()


@pytest.fixture
def ring() -> Keyring:
    return Keyring.generate("k1")


@pytest.fixture
def access() -> RegionalAccess:
    return RegionalAccess({FES_CASE: FES, ORIENTAL_CASE: ORIENTAL})


def _serve(tmp_path, verifier: TokenVerifier, ring: Keyring, access, **kwargs) -> CodecServer:
    database = Database(f"sqlite:///{tmp_path / f'codec-{secrets.token_hex(3)}.db'}")
    server = CodecServer(
        keyring=ring,
        verifier=verifier,
        database=database,
        access=access,
        cors_origins=[UI],
        **kwargs,
    )
    server.start()
    return server


@pytest.fixture
def codec(tmp_path, issuer, ring, access):
    server = _serve(tmp_path, issuer.verifier(), ring, access)
    yield server
    server.stop()
    server.database.dispose()


def _coordinator(issuer: TokenIssuer, region: str = FES, subject: str = "u-coord", **kw) -> str:
    return issuer.issue(role="coordinator", region=region, subject=subject, **kw)


def _plain(text: str) -> Payload:
    return DataConverter.default.payload_converter.to_payloads([text])[0]


def _body(*payloads: Payload) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=list(payloads))).encode()


def _sealed(ring: Keyring, text: str, case_id: str | None = FES_CASE) -> Payload:
    workflow_id = f"journey-{case_id}" if case_id else None
    return encrypt_payload(ring, _plain(text), workflow_id=workflow_id)


def _sealed_body(ring: Keyring, text: str, case_id: str | None = FES_CASE) -> bytes:
    return _body(_sealed(ring, text, case_id))


def _post(
    port: int,
    path: str,
    body: bytes = b'{"payloads": []}',
    *,
    token: str | None = None,
    origin: str | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("X-Namespace", "default")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if origin is not None:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _rows(server: CodecServer) -> list[tuple[str, ...]]:
    with server.database.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT actor, role, action, case_id, target FROM audit_log ORDER BY seq"
        ).all()
    return [tuple(r) for r in rows]


def test_coordinator_decodes_and_is_audited(codec, issuer, ring) -> None:
    status, headers, body = _post(
        codec.port, "/decode", _sealed_body(ring, "Marker-8812"), token=_coordinator(issuer)
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    decoded = json_format.Parse(body, Payloads())
    value = DataConverter.default.payload_converter.from_payloads(list(decoded.payloads))
    assert value == ["Marker-8812"]

    entries = codec.database.call(lambda s: audit.verify(s, keyring=ring))
    assert entries.ok and entries.entries == 1
    with codec.database.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT actor, role, action, target FROM audit_log").one()
    assert tuple(row) == ("u-coord", "coordinator", ACTION_DECODE, "namespace:default")
    # ... with its case id.
    assert _rows(codec)[0][3] == FES_CASE


def test_encode_then_decode_roundtrip_and_token_in_the_path(codec, issuer) -> None:
    token = _coordinator(issuer)
    plain = _plain("Marker-41")
    journey = {"X-Masar-Workflow-Id": f"journey-{FES_CASE}"}
    status, _, sealed = _post(codec.port, "/api/encode", _body(plain), token=token, headers=journey)
    assert status == 200 and b"Marker-41" not in sealed
    [bound] = json_format.Parse(sealed, Payloads()).payloads
    assert bound.metadata[WORKFLOW_ID_METADATA] == f"journey-{FES_CASE}".encode()
    # A UI without a login of its own: the endpoint URL carries the token.
    status, _, opened = _post(codec.port, f"/token/{token}/decode", sealed)
    assert status == 200
    assert json_format.Parse(opened, Payloads()).payloads[0] == plain
    # Both audited, with the case.
    actions = [(r[2], r[3]) for r in _rows(codec)]
    assert actions == [(ACTION_ENCODE, FES_CASE), (ACTION_DECODE, FES_CASE)]
    # Encoding needs the journey it is for, and one she may read.
    assert _post(codec.port, "/encode", _body(plain), token=token)[0] == 400
    elsewhere = {"X-Masar-Workflow-Id": f"journey-{ORIENTAL_CASE}"}
    status, _, reply = _post(codec.port, "/encode", _body(plain), token=token, headers=elsewhere)
    assert status == 403 and b"payloads" not in reply


def test_a_coordinator_of_another_region_cannot_decode(codec, issuer, ring, access) -> None:
    oriental = _coordinator(issuer, region=ORIENTAL, subject="u-oriental")
    body = _sealed_body(ring, "Marker-FES-77")
    status, _, reply = _post(codec.port, "/decode", body, token=oriental)
    assert status == 403 and b"Marker-FES-77" not in reply and b"payloads" not in reply
    # Her own region's payloads she decodes; one foreign payload refuses the whole request.
    own = _sealed(ring, "Marker-ORI", ORIENTAL_CASE)
    assert _post(codec.port, "/decode", _body(own), token=oriental)[0] == 200
    mixed = _body(own, _sealed(ring, "Marker-FES-78"))
    status, _, reply = _post(codec.port, "/decode", mixed, token=oriental)
    assert status == 403 and b"Marker" not in reply
    # Under an emergency grant for that case, she may.
    access.grants.add(("u-oriental", FES_CASE))
    status, _, reply = _post(codec.port, "/decode", body, token=oriental)
    assert status == 200
    # Every refusal and every decode is audited with its case.
    assert [(r[0], r[2], r[3]) for r in _rows(codec)] == [
        ("u-oriental", ACTION_DECODE_REFUSED, FES_CASE),
        ("u-oriental", ACTION_DECODE, ORIENTAL_CASE),
        ("u-oriental", ACTION_DECODE_REFUSED, FES_CASE),
        ("u-oriental", ACTION_DECODE, FES_CASE),
    ]
    assert codec.database.call(lambda s: audit.verify(s, keyring=ring)).ok


def test_a_payload_cannot_be_relabelled_or_unbound(codec, issuer, ring) -> None:
    oriental = _coordinator(issuer, region=ORIENTAL, subject="u-oriental")
    relabelled = _sealed(ring, "Marker-FES-5")
    relabelled.metadata[WORKFLOW_ID_METADATA] = f"journey-{ORIENTAL_CASE}".encode()
    status, _, reply = _post(codec.port, "/decode", _body(relabelled), token=oriental)
    assert status == 400 and b"Marker-FES-5" not in reply
    stripped = _sealed(ring, "Marker-FES-6")
    del stripped.metadata[WORKFLOW_ID_METADATA]
    status, _, reply = _post(codec.port, "/decode", _body(stripped), token=oriental)
    assert status == 403 and b"Marker-FES-6" not in reply
    # Sealed without a journey (no context): nobody decodes it here.
    status, _, _ = _post(
        codec.port, "/decode", _sealed_body(ring, "x", None), token=_coordinator(issuer)
    )
    assert status == 403
    # Plaintext passes through as it came (nothing to reveal, nothing audited).
    plain = _body(_plain("already-plain"))
    status, _, reply = _post(codec.port, "/decode", plain, token=oriental)
    assert status == 200 and json_format.Parse(reply, Payloads()).payloads[0] == _plain(
        "already-plain"
    )
    assert [r[2] for r in _rows(codec)] == []


def test_access_is_remembered_briefly(tmp_path, issuer, ring, access) -> None:
    server = _serve(tmp_path, issuer.verifier(), ring, access, access_ttl=60.0)
    try:
        token = _coordinator(issuer)
        for _ in range(3):
            assert _post(server.port, "/decode", _sealed_body(ring, "x"), token=token)[0] == 200
        assert access.asked == [("u-coord", FES_CASE)]
        assert [r[2] for r in _rows(server)] == [ACTION_DECODE] * 3
    finally:
        server.stop()
        server.database.dispose()


@pytest.mark.parametrize(
    ("who", "status"),
    [("none", 401), ("expired", 401), ("foreign", 401), ("operator", 403), ("staff", 403)],
)
def test_everyone_else_is_refused(codec, issuer, ring, who, status) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    token = {
        "none": None,
        "expired": _coordinator(issuer, ttl=timedelta(hours=1), now=past),
        "foreign": TokenIssuer.generate().issue(role="coordinator", region="oriental"),
        "operator": issuer.issue(role="operator"),
        "staff": issuer.issue(role="shelter_staff", org="shl-1"),
    }[who]
    got, headers, body = _post(codec.port, "/decode", _sealed_body(ring, "Marker-9"), token=token)
    assert got == status
    assert b"Marker-9" not in body
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert codec.database.call(lambda s: audit.verify(s, keyring=ring)).entries == 0


def test_cors_for_the_temporal_ui_only(codec, issuer, ring) -> None:
    status, headers, _ = _post(codec.port, "/decode", b"", origin=UI, method="OPTIONS")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == UI
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert "X-Namespace" in headers["Access-Control-Allow-Headers"]
    status, _, _ = _post(
        codec.port, "/decode", b"", origin="https://evil.example", method="OPTIONS"
    )
    assert status == 403
    token = _coordinator(issuer)
    body = _sealed_body(ring, "Marker-3")
    status, headers, _ = _post(codec.port, "/decode", body, token=token, origin=UI)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == UI
    status, _, reply = _post(
        codec.port, "/decode", body, token=token, origin="https://evil.example"
    )
    assert status == 403 and b"Marker-3" not in reply


def test_bad_requests(codec, issuer) -> None:
    token = _coordinator(issuer)
    assert _post(codec.port, "/decode", b"not json", token=token)[0] == 400
    other_key = _sealed_body(Keyring.generate("k9"), "x")
    assert _post(codec.port, "/decode", other_key, token=token)[0] == 400
    assert _post(codec.port, "/elsewhere", token=token)[0] == 404


def _raw_request(port: int, head: bytes, body: bytes, *, timeout: float = 10.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head + body)
        reply = conn.recv(4096)
    return int(reply.split(b" ", 2)[1])


def test_oversize_and_slow_bodies_are_refused(tmp_path, issuer, ring, access) -> None:
    limits = CodecLimits(max_body_bytes=4096, read_timeout=0.5, request_timeout=5.0)
    server = _serve(tmp_path, issuer.verifier(), ring, access, limits=limits)
    try:
        token = _coordinator(issuer)
        big = _body(*[_sealed(ring, "y" * 200) for _ in range(40)])
        assert len(big) > 4096
        status, _, reply = _post(server.port, "/decode", big, token=token)
        assert status == 413 and b"y" * 20 not in reply
        # Chunked, without a length: counted as it arrives.
        head = (
            b"POST /decode HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        chunk = b"x" * 3000
        chunked = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(3))
        assert _raw_request(server.port, head, chunked + b"0\r\n\r\n") == 413
        # A body that never comes in full.
        slow = (
            b"POST /decode HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        assert _raw_request(server.port, slow, b'{"payl') == 408
        assert _rows(server) == []
    finally:
        server.stop()
        server.database.dispose()


class _FakeIntake(intake_pb2_grpc.IntakeServiceServicer):
    """Intake's answer for GetCaseFollowUp: the coordinator's region decides
    (the forwarded token is read as intake would)."""

    def __init__(self, verifier: TokenVerifier, regions: dict[str, str]) -> None:
        self.verifier = verifier
        self.regions = regions

    def GetCaseFollowUp(self, request, context):
        metadata = dict(context.invocation_metadata())
        try:
            caller = self.verifier.verify(metadata["authorization"].removeprefix("Bearer "))
        except Exception:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")
        if request.case_id not in self.regions:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such case")
        if self.regions[request.case_id] != caller.region:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        return intake_pb2.GetCaseFollowUpResponse()


@pytest.fixture
def fake_intake():
    servers: list[grpc.Server] = []

    def start(verifier: TokenVerifier) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        intake_pb2_grpc.add_IntakeServiceServicer_to_server(
            _FakeIntake(verifier, {FES_CASE: FES, ORIENTAL_CASE: ORIENTAL}),  # type: ignore[abstract]  # serves GetCaseFollowUp only
            server,
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


def test_main_serves_until_stopped(tmp_path, monkeypatch, capsys, ring, fake_intake) -> None:
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    for name in ("MASAR_TOKEN_SIGNING_KEY", "MASAR_TOKEN_PUBLIC_KEY", "MASAR_CODEC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    install_keyring(ring)
    local = TokenIssuer.from_env()  # the local stack's issuer file
    intake_addr = fake_intake(local.verifier())
    monkeypatch.setenv("MASAR_INTAKE_ADDR", intake_addr)
    token = _coordinator(local)
    other = _coordinator(local, region=ORIENTAL)
    replies: list[int] = []

    def ask(server: CodecServer) -> None:
        for who in (token, other):
            replies.append(_post(server.port, "/decode", _sealed_body(ring, "x"), token=who)[0])

    try:
        code = codec_server_main(["--listen", "127.0.0.1:0", "--json"], ready=ask)
    finally:
        install_keyring(None)
    # Intake (here a stand-in reading the forwarded token) decides.
    assert code == 0 and replies == [200, 403]
    printed = json.loads(capsys.readouterr().out)
    assert printed["url"].startswith("http://127.0.0.1:")
    assert printed["intake"] == intake_addr
    assert (tmp_path / "codec.db").exists()


async def test_real_intake_decides_region_and_grants(tmp_path, sqlite_url, ring) -> None:
    """Intake itself, through its API, with the coordinators' own tokens."""
    from masar.v1 import intake_pb2 as pb
    from services.intake.app import MIGRATIONS_DIR, build_components
    from tests.services.harness import running_sector, sector_settings
    from tests.services.intake.support import FES as INTAKE_FES
    from tests.services.intake.support import RABAT, registration
    from tests.support_auth import TEST_ISSUER, bearer, token_for

    settings = sector_settings("intake", tmp_path, sqlite_url)
    async with running_sector(
        settings, functools.partial(build_components), MIGRATIONS_DIR
    ) as intake:
        stub = intake_pb2_grpc.IntakeServiceStub(intake.channel)
        case_id = (await stub.RegisterCase(registration())).case.summary.case_id
        server = _serve(
            tmp_path, TEST_ISSUER.verifier(), ring, IntakeCaseAccess(settings.addr), access_ttl=0
        )
        try:
            body = _sealed_body(ring, "Marker-real", case_id)
            fes = token_for(Role.COORDINATOR, region=INTAKE_FES, subject="coord-fes-9")
            rabat = token_for(Role.COORDINATOR, region=RABAT, subject="coord-rabat-9")

            def decode(token: str) -> int:
                return _post(server.port, "/decode", body, token=token)[0]

            assert await _in_thread(decode, fes) == 200
            assert await _in_thread(decode, rabat) == 403
            ask = pb.OpenEmergencyGrantRequest(
                case_id=case_id, reason=pb.EMERGENCY_REASON_SURVIVOR_RELOCATED, note="Note-x"
            )
            asked = await stub.OpenEmergencyGrant(ask, metadata=bearer(rabat))
            approve = pb.ApproveEmergencyGrantRequest(grant_id=asked.grant.grant_id)
            await stub.ApproveEmergencyGrant(approve, metadata=bearer(fes))  # four eyes
            assert await _in_thread(decode, rabat) == 200
            assert [(r[0], r[2], r[3]) for r in _rows(server)] == [
                ("coord-fes-9", ACTION_DECODE, case_id),
                ("coord-rabat-9", ACTION_DECODE_REFUSED, case_id),
                ("coord-rabat-9", ACTION_DECODE, case_id),
            ]
        finally:
            server.stop()
            server.database.dispose()


async def _in_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)


async def test_temporal_cli_decodes_through_it(
    codec, issuer, ring, temporal_dev_server, temporal_dev_server_path
) -> None:
    marker = f"Marker-{secrets.token_hex(6)}"
    client = await Client.connect(temporal_dev_server.address, **client_options(keyring=ring))
    workflow_id = f"journey-{FES_CASE}-{uuid.uuid4().hex[:8]}"
    codec.access.regions[workflow_id.removeprefix("journey-")] = FES
    # No worker needed: the started event holds the (encrypted) input.
    await client.start_workflow(
        "NoSuchWorkflow", marker, id=workflow_id, task_queue=f"q-{uuid.uuid4().hex[:8]}"
    )

    def show(*extra: str) -> tuple[int, str]:
        done = subprocess.run(
            [
                temporal_dev_server_path,
                "workflow",
                "show",
                "--address",
                temporal_dev_server.address,
                "-w",
                workflow_id,
                "-o",
                "json",
                "--command-timeout",
                "5s",
                "--codec-endpoint",
                f"http://127.0.0.1:{codec.port}",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode, done.stdout

    code, out = show("--codec-auth", f"Bearer {_coordinator(issuer)}")
    assert code == 0
    started = json.loads(out)["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert marker in base64.b64decode(payload["data"]).decode()
    # The client's codec bound the input to its journey; the decode is audited with the case.
    assert (ACTION_DECODE, workflow_id.removeprefix("journey-")) in [
        (r[2], r[3]) for r in _rows(codec)
    ]
    # Refused (403): the CLI gives up, nothing is shown.
    code, out = show(
        "--codec-auth", f"Bearer {issuer.issue(role='operator')}", "--command-timeout", "1s"
    )
    assert code != 0 and marker not in out
    # A coordinator of another region: refused too.
    code, out = show(
        "--codec-auth",
        f"Bearer {_coordinator(issuer, region=ORIENTAL)}",
        "--command-timeout",
        "1s",
    )
    assert code != 0 and marker not in out
    await client.get_workflow_handle(workflow_id).terminate()
