"""Issue 12, item 6: transport security from settings. One service (the
network service, the identity provider) runs with a server certificate this
test makes (a CA of its own, the `cryptography` library); a client that
verifies it against that CA gets through, a plaintext client and one that
trusts another CA do not; with client certificates required, a client
without one is refused. The Temporal client's TLS and API key come from
settings too."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from masar.platform.channels import StaticToken, aio_channel, authorised_channel
from masar.platform.identity import Role
from masar.platform.process import SectorProcess
from masar.platform.settings import Env, SettingsError, TemporalSettings, TlsSettings
from masar.platform.temporal import connection_options
from masar.v1 import identity_pb2, identity_pb2_grpc
from tests.support_auth import token_for
from tests.support_network import network_settings, running_network


@dataclasses.dataclass
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client one."""

    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca(self) -> Path:
        return self.path("ca.pem")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    directory: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca[1], hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / f"{name}.key", key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca(directory, "ca")
    _leaf(directory, "server", ca, server=True)
    _leaf(directory, "client", ca, server=False)
    other = _ca(directory, "other-ca")
    _leaf(directory, "stranger", other, server=False)
    return Pki(directory)


def _tls(env: dict[str, str]) -> TlsSettings:
    return TlsSettings.from_env(Env(env))


def _server_env(pki: Pki, *, mutual: bool = False) -> dict[str, str]:
    env = {
        "MASAR_TLS_CERT_FILE": str(pki.path("server.pem")),
        "MASAR_TLS_KEY_FILE": str(pki.path("server.key")),
        "MASAR_TLS_CA_FILE": str(pki.ca),
    }
    if mutual:
        env["MASAR_TLS_REQUIRE_CLIENT_CERT"] = "true"
    return env


def _client(pki: Pki, *, ca: str = "ca.pem", cert: str | None = None) -> TlsSettings:
    env = {"MASAR_TLS_CA_FILE": str(pki.path(ca))}
    if cert is not None:
        env["MASAR_TLS_CLIENT_CERT_FILE"] = str(pki.path(f"{cert}.pem"))
        env["MASAR_TLS_CLIENT_KEY_FILE"] = str(pki.path(f"{cert}.key"))
    return _tls(env)


@pytest.fixture
async def tls_network(
    tmp_path: Path, pki: Pki, request: pytest.FixtureRequest
) -> AsyncIterator[SectorProcess]:
    mutual = bool(getattr(request, "param", False))
    settings = network_settings(tmp_path)
    common = dataclasses.replace(settings.common, tls=_tls(_server_env(pki, mutual=mutual)))
    async with running_network(dataclasses.replace(settings, common=common)) as process:
        yield process


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def _list_revocations(address: str, tls: TlsSettings) -> int:
    """An authenticated call (a service identity's token) over TLS."""
    source = StaticToken(token_for(Role.SERVICE_SHELTER))
    async with authorised_channel(address, source, tls=tls) as channel:
        reply = await identity_pb2_grpc.IdentityServiceStub(channel).ListRevocations(
            identity_pb2.ListRevocationsRequest(), timeout=5
        )
    return int(reply.cursor)


async def test_a_client_that_verifies_the_certificate_gets_through(
    tls_network: SectorProcess, pki: Pki
) -> None:
    address = f"127.0.0.1:{tls_network.port}"
    async with aio_channel(address, tls=_client(pki)) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert await _list_revocations(address, _client(pki)) >= 0
    # By name, as a deployment dials it (MASAR_TLS_SERVER_NAME when it differs).
    by_name = dataclasses.replace(_client(pki), server_name="localhost")
    assert await _list_revocations(address, by_name) >= 0


async def test_a_plaintext_client_is_refused(tls_network: SectorProcess, pki: Pki) -> None:
    address = f"127.0.0.1:{tls_network.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _health(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Nor does a client that trusts another CA accept the server.
    async with aio_channel(address, tls=_client(pki, ca="other-ca.pem")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _health(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("tls_network", [True], indirect=True)
async def test_mutual_tls_refuses_a_client_without_a_certificate_of_the_ca(
    tls_network: SectorProcess, pki: Pki
) -> None:
    address = f"127.0.0.1:{tls_network.port}"
    assert await _list_revocations(address, _client(pki, cert="client")) >= 0
    for refused in (_client(pki), _client(pki, cert="stranger")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _list_revocations(address, refused)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_settings_are_checked(pki: Pki) -> None:
    assert not _tls({}).server_enabled and not _tls({}).client_enabled  # the local stack
    with pytest.raises(SettingsError, match="go together"):
        _tls({"MASAR_TLS_CERT_FILE": str(pki.path("server.pem"))})
    with pytest.raises(SettingsError, match="readable file"):
        _tls({"MASAR_TLS_CA_FILE": str(pki.path("missing.pem"))})
    with pytest.raises(SettingsError, match="MASAR_TLS_REQUIRE_CLIENT_CERT"):
        _tls({"MASAR_TLS_REQUIRE_CLIENT_CERT": "true"})
    assert _tls({"MASAR_TLS_CA_FILE": str(pki.ca)}).client_enabled
    assert _tls({"MASAR_TLS": "true"}).client_enabled  # the system's roots


def test_temporal_tls_and_api_key_from_settings(pki: Pki) -> None:
    assert connection_options(TemporalSettings.from_env(Env({}))) == {}
    mtls = TemporalSettings.from_env(
        Env(
            {
                "MASAR_TEMPORAL_ADDRESS": "temporal.example:7233",
                "MASAR_TEMPORAL_TLS_CA_FILE": str(pki.ca),
                "MASAR_TEMPORAL_TLS_CERT_FILE": str(pki.path("client.pem")),
                "MASAR_TEMPORAL_TLS_KEY_FILE": str(pki.path("client.key")),
                "MASAR_TEMPORAL_TLS_SERVER_NAME": "temporal.example",
            }
        )
    )
    options = connection_options(mtls)
    tls = options["tls"]
    assert tls.server_root_ca_cert == pki.ca.read_bytes()
    assert tls.client_cert == pki.path("client.pem").read_bytes()
    assert tls.domain == "temporal.example" and "api_key" not in options
    cloud = TemporalSettings.from_env(Env({"MASAR_TEMPORAL_API_KEY": "k3y"}))
    assert cloud.tls and "k3y" not in repr(cloud)
    assert connection_options(cloud)["api_key"] == "k3y"
    with pytest.raises(SettingsError, match="go together"):
        TemporalSettings.from_env(Env({"MASAR_TEMPORAL_TLS_CERT_FILE": str(pki.ca)}))
    with pytest.raises(SettingsError, match="MASAR_TEMPORAL_TLS=false"):
        TemporalSettings.from_env(
            Env({"MASAR_TEMPORAL_API_KEY": "k3y", "MASAR_TEMPORAL_TLS": "false"})
        )
