"""The client side of identity and transport: token sources, and channels
that carry a bearer token, over TLS when the settings say so.

Who a process is, when it calls another service (`service_token_source`):
- MASAR_SERVICE_TOKEN: a token given from outside;
- the issuer itself (MASAR_TOKEN_SIGNING_KEY: the network service; tests
  and benchmarks running everything in one process): tokens it mints;
- every other service: tokens the network service issues to it
  (`IdentityService.IssueClientToken`), proving who it is with its own
  client key (masar.platform.clients) — it never holds the signing key.

Transport (masar.platform.settings.TlsSettings): a channel is TLS when the
process's client settings enable it (`install_client_tls`, done by the
process entry point from its settings) or when given `tls=` explicitly,
verifying the server against MASAR_TLS_CA_FILE (else the system's roots)
and presenting MASAR_TLS_CLIENT_CERT_FILE for mutual TLS; else plaintext
(the local stack, on loopback).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import grpc
import grpc.aio

from masar.contract import ServiceName
from masar.platform.clients import ClientKey
from masar.platform.identity import (
    METADATA_KEY,
    SERVICE_TOKEN_TTL,
    Role,
    TokenIssuer,
    service_role,
)
from masar.platform.settings import (
    CommonSettings,
    Env,
    KeySettings,
    SettingsError,
    TlsSettings,
    process_environ,
)
from masar.v1 import identity_pb2, identity_pb2_grpc


class TokenSource(Protocol):
    def token(self) -> str: ...


class TokenUnavailable(Exception):
    """The network service could not give a token (unreachable, refused);
    the message names which, never a secret."""


# --- transport ------------------------------------------------------------------------------

_client_tls: TlsSettings | None = None


def install_client_tls(tls: TlsSettings | None) -> TlsSettings | None:
    """Set the TLS settings of this process's outgoing channels (the process
    entry point, from its settings); returns the previous ones."""
    global _client_tls
    previous, _client_tls = _client_tls, tls
    return previous


def client_tls(tls: TlsSettings | None = None) -> TlsSettings | None:
    """`tls` if given, else the process's installed client TLS, if enabled."""
    chosen = tls if tls is not None else _client_tls
    return chosen if chosen is not None and chosen.client_enabled else None


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        private_key=tls.client_key_file.read_bytes() if tls.client_key_file else None,
        certificate_chain=tls.client_cert_file.read_bytes() if tls.client_cert_file else None,
    )


def tls_options(tls: TlsSettings | None) -> list[tuple[str, Any]]:
    """Channel options for TLS (the name expected in servers' certificates)."""
    if tls is not None and tls.server_name:
        return [("grpc.ssl_target_name_override", tls.server_name)]
    return []


def aio_channel(
    target: str,
    *,
    tls: TlsSettings | None = None,
    interceptors: list[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to `target`: TLS if the settings enable it."""
    chosen = client_tls(tls)
    if chosen is None:
        return grpc.aio.insecure_channel(target, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, channel_credentials(chosen), options=tls_options(chosen), interceptors=interceptors
    )


def sync_channel(target: str, *, tls: TlsSettings | None = None) -> grpc.Channel:
    """A blocking channel to `target` (the CLI's few synchronous calls)."""
    chosen = client_tls(tls)
    if chosen is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, channel_credentials(chosen), options=tls_options(chosen))


# --- token sources ----------------------------------------------------------------------------


class StaticToken:
    """A token given from outside (MASAR_TOKEN, a test)."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise SettingsError("an empty token was given")
        self._token = token.strip()

    def token(self) -> str:
        return self._token


class MintedToken:
    """A service identity that issues its own short-lived tokens and renews
    them before they expire (the process holds the signing key)."""

    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        role: Role,
        subject: str | None = None,
        org: str = "",
        region: str = "",
        ttl: timedelta = SERVICE_TOKEN_TTL,
    ) -> None:
        self._issuer = issuer
        self._role = role
        self._subject = subject
        self._org = org
        self._region = region
        self._ttl = ttl
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = datetime.min.replace(tzinfo=UTC)

    def token(self) -> str:
        now = datetime.now(UTC)
        with self._lock:
            if now >= self._renew_at:
                self._token = self._issuer.issue(
                    role=self._role,
                    subject=self._subject,
                    org=self._org,
                    region=self._region,
                    ttl=self._ttl,
                    now=now,
                )
                self._renew_at = now + self._ttl * 0.8
            return self._token


@dataclass(frozen=True, kw_only=True)
class TokenRequest:
    """What a client asks the network service for (empty role: a service's
    own identity)."""

    role: str = ""
    org: str = ""
    region: str = ""
    subject: str = ""
    ttl: timedelta | None = None


class NetworkIssuedToken:
    """Tokens the network service issues to this client, which proves who it
    is with its client key (`IssueClientToken`); renewed before they expire.
    `token()` blocks (the CLI); the bearer interceptors await
    `token_async()`."""

    def __init__(
        self,
        address: str,
        client: ClientKey,
        request: TokenRequest | None = None,
        *,
        tls: TlsSettings | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._address = address
        self._client = client
        self._request = request or TokenRequest()
        self._tls = tls
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = datetime.min.replace(tzinfo=UTC)

    def _message(self) -> identity_pb2.IssueClientTokenRequest:
        r = self._request
        return identity_pb2.IssueClientTokenRequest(
            client_assertion=self._client.assertion(),
            spec=identity_pb2.TokenSpec(
                role=r.role,
                organisation_id=r.org,
                region=r.region,
                subject=r.subject,
                ttl_seconds=int(r.ttl.total_seconds()) if r.ttl else 0,
            ),
        )

    def _cached(self) -> str | None:
        with self._lock:
            if self._token and datetime.now(UTC) < self._renew_at:
                return self._token
        return None

    def _store(self, reply: identity_pb2.IssueTokenResponse) -> str:
        issued = reply.issued_at.ToDatetime(tzinfo=UTC)
        expires = reply.expires_at.ToDatetime(tzinfo=UTC)
        with self._lock:
            self._token = str(reply.token)
            self._renew_at = issued + (expires - issued) * 0.8
            return self._token

    def _unavailable(self, exc: grpc.RpcError) -> TokenUnavailable:
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.UNAVAILABLE:
            return TokenUnavailable(f"the network service ({self._address}) is not reachable")
        name = code.name.lower() if code is not None else "error"
        detail = exc.details() if hasattr(exc, "details") else ""
        return TokenUnavailable(f"the network service refused a token ({name}: {detail})")

    def token(self) -> str:
        cached = self._cached()
        if cached is not None:
            return cached
        try:
            with sync_channel(self._address, tls=self._tls) as channel:
                reply = identity_pb2_grpc.IdentityServiceStub(channel).IssueClientToken(
                    self._message(), timeout=self._timeout
                )
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from None
        return self._store(reply)

    async def token_async(self) -> str:
        cached = self._cached()
        if cached is not None:
            return cached
        try:
            async with aio_channel(self._address, tls=self._tls) as channel:
                reply = await identity_pb2_grpc.IdentityServiceStub(channel).IssueClientToken(
                    self._message(), timeout=self._timeout
                )
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from None
        return self._store(reply)


def token_from_env(environ: Mapping[str, str] | None = None) -> StaticToken | None:
    """MASAR_TOKEN: the token a CLI or client presents, if one is set."""
    env = process_environ() if environ is None else environ
    value = env.get("MASAR_TOKEN", "").strip()
    return StaticToken(value) if value else None


def service_identity(name: ServiceName, keys: KeySettings, common: CommonSettings) -> TokenSource:
    """The identity a service presents to its own API, to intake and to the
    network service: MASAR_SERVICE_TOKEN if set; tokens it mints itself if
    it is the issuer (MASAR_TOKEN_SIGNING_KEY); else tokens the network
    service issues to it, asked for with its own client key."""
    if keys.service_token:
        return StaticToken(keys.service_token)
    if keys.token_signing_key:
        return MintedToken(
            TokenIssuer.from_keys(keys), role=service_role(name), ttl=SERVICE_TOKEN_TTL
        )
    client = ClientKey.from_keys(keys)
    address = common.service_addrs["network"]
    # One source per identity in a process: its activities, its anchorer and
    # its revocation poller share the token it was given.
    cache_key = (name, address, client.key_id)
    with _identities_lock:
        source = _identities.get(cache_key)
        if source is None:
            source = _identities[cache_key] = NetworkIssuedToken(address, client, tls=common.tls)
    return source


_identities: dict[tuple[str, str, str], NetworkIssuedToken] = {}
_identities_lock = threading.Lock()


def service_token_source(
    name: ServiceName, environ: Mapping[str, str] | None = None
) -> TokenSource:
    """`service_identity` of the service `name`, its settings read from
    `environ` (masar.platform.process.identity_environ)."""
    env = Env(process_environ() if environ is None else environ)
    common = CommonSettings.from_env(env)
    return service_identity(name, KeySettings.from_env(name, env, common.data_dir), common)


async def token_of(source: TokenSource) -> str:
    """The source's token, without blocking the event loop when it must
    ask the network service."""
    fetch = getattr(source, "token_async", None)
    if fetch is not None:
        return str(await fetch())
    return source.token()


def bearer_metadata(source: TokenSource) -> tuple[tuple[str, str]]:
    return ((METADATA_KEY, f"Bearer {source.token()}"),)


class _BearerBase:
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        pairs = [(k, v) for k, v in (details.metadata or ()) if k.lower() != METADATA_KEY]
        pairs.append((METADATA_KEY, f"Bearer {await token_of(self._source)}"))
        return details._replace(metadata=grpc.aio.Metadata(*pairs))


class _BearerUnaryUnary(_BearerBase, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(await self._details(details), request)


class _BearerUnaryStream(_BearerBase, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(await self._details(details), request)


class _BearerStreamUnary(_BearerBase, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(await self._details(details), requests)


class _BearerStreamStream(_BearerBase, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(await self._details(details), requests)


def bearer_interceptors(source: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that attach `authorization: Bearer ...` to every call:
    `grpc.aio.insecure_channel(addr, interceptors=bearer_interceptors(src))`."""
    return [
        _BearerUnaryUnary(source),
        _BearerUnaryStream(source),
        _BearerStreamUnary(source),
        _BearerStreamStream(source),
    ]


def authorised_channel(
    target: str, source: TokenSource, *, tls: TlsSettings | None = None
) -> grpc.aio.Channel:
    """A channel whose every call carries `source`'s token: TLS when `tls`
    (else the process's installed client TLS) enables it."""
    return aio_channel(target, tls=tls, interceptors=bearer_interceptors(source))
