"""The client side of identity: token sources and channels that carry a bearer token."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import grpc

from masar.contract import ServiceName
from masar.platform.identity import METADATA_KEY, Role, TokenIssuer, service_role
from masar.platform.settings import SettingsError, process_environ


class TokenSource(Protocol):
    def token(self) -> str: ...


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
        ttl: timedelta = timedelta(hours=1),
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


def token_from_env(environ: Mapping[str, str] | None = None) -> StaticToken | None:
    """MASAR_TOKEN: the token a CLI or client presents, if one is set."""
    env = process_environ() if environ is None else environ
    value = env.get("MASAR_TOKEN", "").strip()
    return StaticToken(value) if value else None


def service_token_source(
    name: ServiceName, environ: Mapping[str, str] | None = None
) -> TokenSource:
    """The identity a sector's activities present to its own API: the token
    in MASAR_SERVICE_TOKEN if set, else tokens minted with the issuer key."""
    env = process_environ() if environ is None else environ
    given = env.get("MASAR_SERVICE_TOKEN", "").strip()
    if given:
        return StaticToken(given)
    return MintedToken(TokenIssuer.from_env(env), role=service_role(name))


def bearer_metadata(source: TokenSource) -> tuple[tuple[str, str]]:
    return ((METADATA_KEY, f"Bearer {source.token()}"),)


class _BearerBase:
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        pairs = [(k, v) for k, v in (details.metadata or ()) if k.lower() != METADATA_KEY]
        pairs.append((METADATA_KEY, f"Bearer {self._source.token()}"))
        return details._replace(metadata=grpc.aio.Metadata(*pairs))


class _BearerUnaryUnary(_BearerBase, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerUnaryStream(_BearerBase, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerStreamUnary(_BearerBase, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _BearerStreamStream(_BearerBase, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(source: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that attach `authorization: Bearer ...` to every call:
    `grpc.aio.insecure_channel(addr, interceptors=bearer_interceptors(src))`."""
    return [
        _BearerUnaryUnary(source),
        _BearerUnaryStream(source),
        _BearerStreamUnary(source),
        _BearerStreamStream(source),
    ]


def authorised_channel(target: str, source: TokenSource) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, interceptors=bearer_interceptors(source))
