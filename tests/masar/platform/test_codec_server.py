"""`masar codec-server`: Temporal's remote codec protocol, for coordinators only."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.converter import DataConverter

from masar.cli.codec import codec_server_main
from masar.platform import audit
from masar.platform.codec import encrypt_payload
from masar.platform.codec_server import ACTION_DECODE, CodecServer
from masar.platform.crypto import Keyring, install_keyring
from masar.platform.db import Database
from masar.platform.identity import TokenIssuer
from masar.platform.temporal import client_options

UI = "http://localhost:8233"


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer.generate()


@pytest.fixture
def ring() -> Keyring:
    return Keyring.generate("k1")


@pytest.fixture
def codec(tmp_path, issuer, ring):
    database = Database(f"sqlite:///{tmp_path / 'codec.db'}")
    server = CodecServer(
        keyring=ring, verifier=issuer.verifier(), database=database, cors_origins=[UI]
    )
    server.start()
    yield server
    server.stop()
    database.dispose()


def _coordinator(issuer: TokenIssuer, **kwargs) -> str:
    return issuer.issue(role="coordinator", region="fes-meknes", subject="u-coord", **kwargs)


def _sealed_body(ring: Keyring, text: str) -> bytes:
    plain = DataConverter.default.payload_converter.to_payloads([text])[0]
    sealed = Payloads(payloads=[encrypt_payload(ring, plain)])
    return json_format.MessageToJson(sealed).encode()


def _post(
    port: int,
    path: str,
    body: bytes = b'{"payloads": []}',
    *,
    token: str | None = None,
    origin: str | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("X-Namespace", "default")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if origin is not None:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


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


def test_encode_then_decode_roundtrip_and_token_in_the_path(codec, issuer) -> None:
    token = _coordinator(issuer)
    plain = DataConverter.default.payload_converter.to_payloads(["Marker-41"])[0]
    body = json_format.MessageToJson(Payloads(payloads=[plain])).encode()
    status, _, sealed = _post(codec.port, "/api/encode", body, token=token)
    assert status == 200 and b"Marker-41" not in sealed
    # A UI without a login of its own: the endpoint URL carries the token.
    status, _, opened = _post(codec.port, f"/token/{token}/decode", sealed)
    assert status == 200
    assert json_format.Parse(opened, Payloads()).payloads[0] == plain


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


def test_main_serves_until_stopped(tmp_path, monkeypatch, capsys, ring) -> None:
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    for name in ("MASAR_TOKEN_SIGNING_KEY", "MASAR_TOKEN_PUBLIC_KEY", "MASAR_CODEC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    install_keyring(ring)
    token = _coordinator(TokenIssuer.from_env())  # the local stack's issuer file
    replies: list[int] = []
    try:
        code = codec_server_main(
            ["--listen", "127.0.0.1:0", "--json"],
            ready=lambda server: replies.append(
                _post(server.port, "/decode", _sealed_body(ring, "x"), token=token)[0]
            ),
        )
    finally:
        install_keyring(None)
    assert code == 0 and replies == [200]
    printed = json.loads(capsys.readouterr().out)
    assert printed["url"].startswith("http://127.0.0.1:")
    assert (tmp_path / "codec.db").exists()


async def test_temporal_cli_decodes_through_it(
    codec, issuer, ring, temporal_dev_server, temporal_dev_server_path
) -> None:
    marker = f"Marker-{secrets.token_hex(6)}"
    client = await Client.connect(temporal_dev_server.address, **client_options(keyring=ring))
    workflow_id = f"codec-cli-{uuid.uuid4().hex}"
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
    # Refused (403): the CLI gives up, nothing is shown.
    code, out = show(
        "--codec-auth", f"Bearer {issuer.issue(role='operator')}", "--command-timeout", "1s"
    )
    assert code != 0 and marker not in out
    await client.get_workflow_handle(workflow_id).terminate()
