"""Bearer tokens, the deny-by-default interceptor and `masar token issue`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from masar.cli.token import token_issue_main
from masar.platform.access import AccessPolicy, AuthInterceptor, requires
from masar.platform.channels import (
    MintedToken,
    StaticToken,
    authorised_channel,
    service_token_source,
)
from masar.platform.errors import NotFound, Unauthenticated
from masar.platform.identity import (
    ANY_AUTHENTICATED,
    Role,
    TokenIssuer,
    TokenVerifier,
    current_caller,
    parse_duration,
)
from masar.platform.rpc import GrpcService, start_server
from masar.platform.settings import Env, KeySettings, SettingsError
from tests.conftest import free_port
from tests.support_network import NetworkThread, bootstrap_client, network_settings

SERVICE = "masar.test.Guarded"


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer.generate()


def _keys(holder: str, env: dict[str, str], data_dir: Any) -> KeySettings:
    return KeySettings.from_env(holder, Env(env), data_dir)


def _swap_claims(token: str, **changes: Any) -> str:
    header, claims, signature = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    doc.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# --- tokens ------------------------------------------------------------------------


def test_token_names_the_caller(issuer) -> None:
    token = issuer.issue(role="shelter_staff", subject="u-17", org="shl-3", region="fes-meknes")
    caller = issuer.verifier().verify(token)
    assert (caller.subject, caller.role, caller.org, caller.region) == (
        "u-17",
        Role.SHELTER_STAFF,
        "shl-3",
        "fes-meknes",
    )
    assert caller.expires_at - caller.issued_at == timedelta(hours=8)
    assert not caller.is_service
    service = issuer.verifier().verify(issuer.issue(role=Role.SERVICE_SHELTER))
    assert service.subject == "service:shelter" and service.is_service


def test_expired_forged_and_malformed_tokens_are_refused(issuer) -> None:
    verifier = issuer.verifier()
    past = datetime.now(UTC) - timedelta(hours=2)
    expired = issuer.issue(role="operator", ttl=timedelta(hours=1), now=past)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(expired)
    good = issuer.issue(role="intake_officer")
    with pytest.raises(Unauthenticated, match="signature"):
        verifier.verify(_swap_claims(good, role="coordinator", region="oriental"))
    with pytest.raises(Unauthenticated, match="unknown key"):
        verifier.verify(TokenIssuer.generate().issue(role="coordinator", region="oriental"))
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    unsigned = f"{header}.{good.split('.')[1]}."
    for bad in ("", "x", "a.b.c", "a.b", unsigned, good + "x" * 5000):
        with pytest.raises(Unauthenticated) as err:
            verifier.verify(bad)
        assert good not in err.value.message


def test_issuing_refuses_claims_that_cannot_be_scoped(issuer) -> None:
    with pytest.raises(ValueError, match="region is required"):
        issuer.issue(role="coordinator")
    with pytest.raises(ValueError, match="org is required"):
        issuer.issue(role="shelter_staff")
    with pytest.raises(ValueError, match="region"):
        issuer.issue(role="operator", region="paris")
    with pytest.raises(ValueError, match="subject"):
        issuer.issue(role="operator", subject="fatima@example.org")
    with pytest.raises(ValueError, match="role"):
        issuer.issue(role="admin")
    with pytest.raises(ValueError, match="at most 12 hours"):
        issuer.issue(role="operator", ttl=timedelta(hours=13))
    assert parse_duration("90s") == timedelta(seconds=90)
    with pytest.raises(ValueError):
        parse_duration("8 hours")


def test_keys_from_env_and_rotation(tmp_path) -> None:
    # The local stack: the network service's own issuer file, its public
    # half for everyone else (who never creates a key).
    local = {"MASAR_DATA_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="no token public key"):
        TokenVerifier.from_env(local)
    first = TokenIssuer.from_env(local)
    assert TokenIssuer.from_env(local).key_id == first.key_id
    private = tmp_path / "keys" / "network" / "token-issuer.json"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert "private_key" not in (tmp_path / "keys" / "public" / "token-issuer.json").read_text()
    TokenVerifier.from_env(local).verify(first.issue(role="operator"))
    for holder in ("intake", "shelter", "journey", "cli"):
        with pytest.raises(SettingsError, match="holds no token-signing key"):
            TokenIssuer.from_keys(_keys(holder, local, tmp_path))

    # A deployment: services hold public keys only; old and new both verify.
    old, new = TokenIssuer.generate(), TokenIssuer.generate()
    env = {"MASAR_TOKEN_PUBLIC_KEY": f"{new.public_key_b64()},{old.public_key_b64()}"}
    verifier = TokenVerifier.from_env(env)
    for issuer in (old, new):
        verifier.verify(issuer.issue(role="operator"))
    with pytest.raises(SettingsError, match="MASAR_TOKEN_SIGNING_KEY"):
        TokenIssuer.from_env(env)
    signer = TokenIssuer.from_env({**env, "MASAR_TOKEN_SIGNING_KEY": new.private_key_b64()})
    assert signer.key_id == new.key_id
    with pytest.raises(SettingsError, match="MASAR_TOKEN_PUBLIC_KEY"):
        TokenVerifier.from_env({"MASAR_TOKEN_PUBLIC_KEY": "bm90IGEga2V5"})


def test_policy_declarations_are_checked() -> None:
    with pytest.raises(ValueError):
        requires("admin")
    with pytest.raises(ValueError):
        AccessPolicy({"NoSlash": [Role.OPERATOR]})


# --- through a real gRPC server -----------------------------------------------------------


class Guarded:
    @requires(Role.SHELTER_STAFF, Role.COORDINATOR)
    async def Decide(self, request: bytes, context: Any) -> bytes:
        return b"decided"

    @requires(ANY_AUTHENTICATED)
    async def WhoAmI(self, request: bytes, context: Any) -> bytes:
        # The caller is visible in the handler and in Database.run's thread.
        in_thread = await asyncio.to_thread(lambda: current_caller().subject)
        caller = current_caller()
        return f"{caller.subject}|{caller.role}|{in_thread}".encode()

    @requires(Role.OPERATOR)
    async def Missing(self, request: bytes, context: Any) -> bytes:
        raise NotFound("case not found")

    async def Undeclared(self, request: bytes, context: Any) -> bytes:
        return b"should never run"


def register(servicer: Guarded, server: grpc.aio.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
        for name in ("Decide", "WhoAmI", "Missing", "Undeclared")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
async def server(issuer):
    services = [GrpcService(SERVICE, Guarded(), register)]
    policy = AccessPolicy.from_services(services)
    interceptor = AuthInterceptor(issuer.verifier(), policy)
    running = await start_server(services, "127.0.0.1:0", interceptors=[interceptor])
    yield running
    await running.stop(0)


async def _call(port: int, method: str, token: str | None) -> bytes:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await channel.unary_unary(f"/{SERVICE}/{method}")(b"", metadata=metadata)


def _token(issuer: TokenIssuer, kind: str) -> str | None:
    if kind == "none":
        return None
    if kind == "expired":
        past = datetime.now(UTC) - timedelta(days=1)
        return issuer.issue(role="coordinator", region="oriental", ttl=timedelta(hours=1), now=past)
    if kind == "forged":
        return _swap_claims(issuer.issue(role="operator"), role="coordinator", region="oriental")
    if kind == "foreign":
        return TokenIssuer.generate().issue(role="coordinator", region="oriental")
    if kind == "garbage":
        return "not-a-token"
    if kind == "coordinator":
        return issuer.issue(role="coordinator", region="oriental", subject="u-coord")
    if kind == "shelter_staff":
        return issuer.issue(role="shelter_staff", org="shl-1", subject="u-staff")
    if kind == "intake_officer":
        return issuer.issue(role=kind, org="org-a")
    if kind == "scopeless_officer":
        return issuer.issue(role="intake_officer")
    return issuer.issue(role=kind)


@pytest.mark.parametrize(
    ("method", "who", "code"),
    [
        ("Decide", "none", grpc.StatusCode.UNAUTHENTICATED),
        ("Decide", "expired", grpc.StatusCode.UNAUTHENTICATED),
        ("Decide", "forged", grpc.StatusCode.UNAUTHENTICATED),
        ("Decide", "foreign", grpc.StatusCode.UNAUTHENTICATED),
        ("Decide", "garbage", grpc.StatusCode.UNAUTHENTICATED),
        ("Decide", "operator", grpc.StatusCode.PERMISSION_DENIED),
        ("Decide", "intake_officer", grpc.StatusCode.PERMISSION_DENIED),
        ("Decide", "scopeless_officer", grpc.StatusCode.UNAUTHENTICATED),
        ("Undeclared", "coordinator", grpc.StatusCode.PERMISSION_DENIED),
        ("WhoAmI", "none", grpc.StatusCode.UNAUTHENTICATED),
        ("Missing", "operator", grpc.StatusCode.NOT_FOUND),  # errors still mapped
    ],
)
async def test_refusals(server, issuer, method, who, code) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(server.port, method, _token(issuer, who))
    assert err.value.code() == code


async def test_allowed_roles_get_through_as_themselves(server, issuer) -> None:
    assert await _call(server.port, "Decide", _token(issuer, "shelter_staff")) == b"decided"
    assert await _call(server.port, "Decide", _token(issuer, "coordinator")) == b"decided"
    who = await _call(server.port, "WhoAmI", _token(issuer, "shelter_staff"))
    assert who == b"u-staff|shelter_staff|u-staff"


async def test_health_is_open_without_a_token(server) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_client_interceptor_attaches_the_token(server, issuer, tmp_path) -> None:
    minted = MintedToken(issuer, role=Role.SERVICE_SHELTER)
    async with authorised_channel(f"127.0.0.1:{server.port}", minted) as channel:
        who = await channel.unary_unary(f"/{SERVICE}/WhoAmI")(b"")
        assert who == b"service:shelter|service:shelter|service:shelter"
        # The service identity is not a staff role.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary(f"/{SERVICE}/Decide")(b"")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    static = StaticToken(_token(issuer, "coordinator") or "")
    async with authorised_channel(f"127.0.0.1:{server.port}", static) as channel:
        assert await channel.unary_unary(f"/{SERVICE}/Decide")(b"") == b"decided"
    # The issuer's own process (tests: MASAR_TOKEN_SIGNING_KEY) mints its identity.
    env = {"MASAR_DATA_DIR": str(tmp_path), "MASAR_TOKEN_SIGNING_KEY": issuer.private_key_b64()}
    source = service_token_source("legal", env)
    assert issuer.verifier().verify(source.token(), audience="legal").role is Role.SERVICE_LEGAL
    assert service_token_source("legal", {"MASAR_SERVICE_TOKEN": "t0k"}).token() == "t0k"
    # Any other service asks the network service, with its own client key.
    with pytest.raises(SettingsError, match=r"client\.json"):
        service_token_source("legal", {"MASAR_DATA_DIR": str(tmp_path)})


# --- `masar token issue` ------------------------------------------------------------------


@pytest.fixture
def local_network(tmp_path, monkeypatch) -> Iterator[NetworkThread]:
    """A local stack's network service and the CLI's bootstrap client key;
    the CLI holds no signing key."""
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MASAR_TOKEN_SIGNING_KEY", raising=False)
    monkeypatch.delenv("MASAR_TOKEN_PUBLIC_KEY", raising=False)
    bootstrap_client(tmp_path)
    network = NetworkThread(network_settings(tmp_path)).start()
    monkeypatch.setenv("MASAR_NETWORK_ADDR", network.address)
    yield network
    network.stop()


def test_token_issue_command(local_network, tmp_path, capsys) -> None:
    argv = ["--role", "coordinator", "--region", "fes-meknes", "--ttl", "2h", "--json"]
    assert token_issue_main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    caller = TokenVerifier.from_env().verify(doc["token"])
    assert caller.role is Role.COORDINATOR and caller.region == doc["region"] == "fes-meknes"
    assert caller.expires_at - caller.issued_at == timedelta(hours=2)

    assert token_issue_main(["--role", "operator", "--subject", "ops-1"]) == 0
    plain = capsys.readouterr().out.strip()
    assert TokenVerifier.from_env().verify(plain).subject == "ops-1"

    assert token_issue_main(["--role", "coordinator"]) == 2
    assert "region is required" in capsys.readouterr().err
    assert token_issue_main(["--role", "intake_officer"]) == 2
    assert "org is required" in capsys.readouterr().err
    assert token_issue_main(["--role", "operator", "--ttl", "soon"]) == 2
    assert token_issue_main(["--role", "operator", "--ttl", "13h"]) == 2
    assert "12 hours" in capsys.readouterr().err
    # Only the network service holds the signing key: nothing else has one.
    keys = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "keys").rglob("*.json"))
    assert keys == [
        "keys/cli/client.json",
        "keys/network/token-issuer.json",
        "keys/public/clients/cli.json",
        "keys/public/token-issuer.json",
    ]


def test_token_issue_needs_the_network_or_an_administrator(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MASAR_TOKEN_SIGNING_KEY", raising=False)
    # No local stack here: no bootstrap client key, and nothing created.
    assert token_issue_main(["--role", "operator"]) == 1
    assert "no local stack found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # A stack's key, but its network service is not running.
    bootstrap_client(tmp_path)
    monkeypatch.setenv("MASAR_NETWORK_ADDR", f"127.0.0.1:{free_port()}")
    assert token_issue_main(["--role", "operator"]) == 1
    assert "not reachable" in capsys.readouterr().err


def test_an_administrator_issues_tokens_and_no_one_else(local_network, monkeypatch, capsys) -> None:
    def bootstrap(*argv: str) -> str:
        monkeypatch.delenv("MASAR_TOKEN", raising=False)
        assert token_issue_main(list(argv)) == 0
        return capsys.readouterr().out.strip()

    admin = bootstrap("--role", "network_admin")
    coordinator = bootstrap("--role", "coordinator", "--region", "oriental")
    staff = ["--role", "legal_aid", "--org", "org-b", "--json"]
    monkeypatch.setenv("MASAR_TOKEN", admin)
    assert token_issue_main(staff) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["audiences"] == ["legal", "network"] and doc["org"] == "org-b"
    monkeypatch.setenv("MASAR_TOKEN", coordinator)
    assert token_issue_main(staff) == 1
    assert "permission_denied" in capsys.readouterr().err
