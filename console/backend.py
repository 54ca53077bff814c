"""The console's way to the services: one gRPC channel per service, every
call with the signed-in person's own bearer token (renewed with her refresh
token when it is about to expire), and gRPC statuses turned into errors a
page can show (`Refused`). Nothing here reads a service's database or talks
to Temporal: journeys are intake's journey API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from console.sessions import Session
from masar.contract import ServiceName
from masar.platform.channels import aio_channel
from masar.platform.settings import ConsoleSettings
from masar.v1 import (
    employment_pb2_grpc,
    health_pb2_grpc,
    intake_pb2_grpc,
    journey_pb2_grpc,
    legal_pb2_grpc,
    network_pb2,
    network_pb2_grpc,
    psychosocial_pb2_grpc,
    shelter_pb2_grpc,
)

T = TypeVar("T")
CALL_TIMEOUT = 15.0


class Refused(Exception):
    """A call the services refused or could not answer; `kind` picks the page:
    not_allowed (403), not_found (404), invalid (the form again, `field`
    named), conflict (409), signed_out, unavailable (503)."""

    def __init__(self, kind: str, message: str, *, field: str = "", service: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field
        self.service = service


_KINDS = {
    grpc.StatusCode.PERMISSION_DENIED: "not_allowed",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.OUT_OF_RANGE: "invalid",
    grpc.StatusCode.FAILED_PRECONDITION: "conflict",
    grpc.StatusCode.ABORTED: "conflict",
    grpc.StatusCode.ALREADY_EXISTS: "conflict",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "conflict",
    grpc.StatusCode.UNAUTHENTICATED: "signed_out",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "unavailable",
}


def refused(service: str, exc: grpc.aio.AioRpcError) -> Refused:
    kind = _KINDS.get(exc.code(), "unavailable")
    details = exc.details() or ""
    field = ""
    if kind == "invalid" and ":" in details:
        field = details.split(":", 1)[0].strip()
    # A refusal's details name fields and rules, never personal data (the
    # services' own rule); they are shown as they are.
    return Refused(kind, details, field=field, service=service)


@dataclass
class Stubs:
    intake: intake_pb2_grpc.IntakeServiceStub
    journeys: journey_pb2_grpc.JourneyServiceStub
    shelter: shelter_pb2_grpc.ShelterServiceStub
    legal: legal_pb2_grpc.LegalAidServiceStub
    employment: employment_pb2_grpc.EmploymentServiceStub
    health: health_pb2_grpc.HealthServiceStub
    psychosocial: psychosocial_pb2_grpc.PsychosocialServiceStub
    network: network_pb2_grpc.NetworkServiceStub


class Backend:
    """Channels to the services, opened on first use (inside the server's
    event loop: grpc.aio channels belong to the loop that made them) and kept
    for the console's life."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self._addrs = settings.common.service_addrs
        self._tls = settings.common.tls
        self._channels: dict[ServiceName, grpc.aio.Channel] = {}
        self._stubs: Stubs | None = None

    @property
    def stubs(self) -> Stubs:
        if self._stubs is None:
            ch = self._channels = {
                name: aio_channel(addr, tls=self._tls) for name, addr in self._addrs.items()
            }
            self._stubs = Stubs(
                intake=intake_pb2_grpc.IntakeServiceStub(ch["intake"]),
                journeys=journey_pb2_grpc.JourneyServiceStub(ch["intake"]),
                shelter=shelter_pb2_grpc.ShelterServiceStub(ch["shelter"]),
                legal=legal_pb2_grpc.LegalAidServiceStub(ch["legal"]),
                employment=employment_pb2_grpc.EmploymentServiceStub(ch["employment"]),
                health=health_pb2_grpc.HealthServiceStub(ch["health"]),
                psychosocial=psychosocial_pb2_grpc.PsychosocialServiceStub(ch["psychosocial"]),
                network=network_pb2_grpc.NetworkServiceStub(ch["network"]),
            )
        return self._stubs

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels, self._stubs = {}, None

    async def sign_in(self, login: str, password: str, totp: str) -> network_pb2.SignedIn:
        reply = await self._anonymous(
            "network",
            lambda: self.stubs.network.SignIn(
                network_pb2.SignInRequest(login=login, password=password, totp_code=totp),
                timeout=CALL_TIMEOUT,
            ),
        )
        signed_in: network_pb2.SignedIn = reply.signed_in
        return signed_in

    async def change_password(self, request: network_pb2.ChangePasswordRequest) -> None:
        await self._anonymous(
            "network", lambda: self.stubs.network.ChangePassword(request, timeout=CALL_TIMEOUT)
        )

    async def _anonymous(self, service: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            raise refused(service, exc) from None

    async def call(self, session: Session, service: str, method: Any, request: Any) -> Any:
        """`method(request)` as the signed-in person."""
        if not session.signed_in:
            raise Refused("signed_out", "not signed in")
        if not session.access_fresh():
            await self.refresh(session)
        metadata = (("authorization", f"Bearer {session.access_token}"),)
        try:
            return await method(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise refused(service, exc) from None

    def stream(self, session: Session, method: Any, request: Any) -> Any:
        """A server stream as the signed-in person (the caller iterates it)."""
        metadata = (("authorization", f"Bearer {session.access_token}"),)
        return method(request, metadata=metadata)

    async def refresh(self, session: Session) -> None:
        expires = session.refresh_expires_at
        if not session.refresh_token or expires is None or expires <= datetime.now(UTC):
            raise Refused("signed_out", "the session has ended")
        reply = await self._anonymous(
            "network",
            lambda: self.stubs.network.RefreshToken(
                network_pb2.RefreshTokenRequest(refresh_token=session.refresh_token),
                timeout=CALL_TIMEOUT,
            ),
        )
        adopt(session, reply.signed_in, username=session.username)


def role_name(role: network_pb2.AccountRole.ValueType) -> str:
    return str(network_pb2.AccountRole.Name(role)).removeprefix("ACCOUNT_ROLE_").lower()


LANGUAGE_CODES = {
    network_pb2.PREFERRED_LANGUAGE_AR: "ar",
    network_pb2.PREFERRED_LANGUAGE_FR: "fr",
    network_pb2.PREFERRED_LANGUAGE_EN: "en",
}


def adopt(session: Session, signed_in: network_pb2.SignedIn, *, username: str) -> None:
    """Take a sign-in's (or a renewal's) tokens and identity into the session."""
    session.account_id = signed_in.account_id
    session.username = username
    session.role = role_name(signed_in.role)
    session.organisation_id = signed_in.organisation_id
    session.region = signed_in.region
    session.access_token = signed_in.access_token
    session.access_expires_at = signed_in.access_token_expires_at.ToDatetime(tzinfo=UTC)
    session.refresh_token = signed_in.refresh_token
    session.refresh_expires_at = signed_in.refresh_token_expires_at.ToDatetime(tzinfo=UTC)
    if not session.language:
        session.language = LANGUAGE_CODES.get(signed_in.language, "")
