"""Identities for test clients: signed bearer tokens the services accept.

The whole suite runs under ONE token issuer: tests/conftest.py puts its key in
MASAR_TOKEN_SIGNING_KEY for every test, so every service started in-process
(and every `masar` process a test starts with the test's environment) trusts
the tokens made here.

- `token_for(role, org="", region="")` — a token for any role and scope;
- `authed_channel(address, role, org="", region="")` — a channel whose every
  call carries such a token (or `token=` one made by hand: expired, forged);
- `bearer(token)` — per-call metadata, which overrides a channel's token;
- `consent_proof(case_id, sector)` — intake's proof of consent, as sector
  request RPCs (RequestPlacement, ...) require;
- `rightful_channel(address)` — the channel the harness and the live stack
  give tests that are about behaviour, not access: each call carries the
  token of whoever may legitimately make it (the sector's service identity
  for journey-facing RPCs, the staff of the organisation the referral is
  addressed to for staff actions — looked up as the service identity does —,
  a coordinator of the request's region for reference data and listings, an
  intake officer for intake). Access
  itself is tested with explicit tokens (tests/services/test_access_walk.py).

Other engineers' tests (faults, bench) use these too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio

from masar.contract import REGIONS, Sector
from masar.platform.channels import StaticToken, bearer_interceptors
from masar.platform.identity import METADATA_KEY, Role, TokenIssuer
from masar.referral.consent import issue_consent_proof
from masar.referral.messages import SECTOR_IN
from masar.v1 import common_pb2

TEST_ISSUER = TokenIssuer.generate()
DEFAULT_REGION = "fes-meknes"
ENV = "MASAR_TOKEN_SIGNING_KEY"


def issuer_env() -> dict[str, str]:
    """The environment that makes a process trust this module's tokens."""
    return {ENV: TEST_ISSUER.private_key_b64()}


def token_for(
    role: Role | str,
    org: str = "",
    region: str = "",
    *,
    ttl: timedelta = timedelta(hours=1),
    subject: str | None = None,
    now: datetime | None = None,
) -> str:
    return TEST_ISSUER.issue(role=role, org=org, region=region, ttl=ttl, subject=subject, now=now)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return ((METADATA_KEY, f"Bearer {token}"),)


def authed_channel(
    address: str,
    role: Role | str | None = None,
    org: str = "",
    region: str = "",
    *,
    token: str | None = None,
) -> grpc.aio.Channel:
    """A channel acting as `role` (or presenting `token` as it is)."""
    if token is None:
        if role is None:
            raise ValueError("give a role or a token")
        token = token_for(role, org, region)
    return grpc.aio.insecure_channel(address, interceptors=bearer_interceptors(StaticToken(token)))


def consent_proof(case_id: str, sector: Sector | str) -> str:
    """Intake's proof for this case and sector, of a consent given just now
    ("" for a malformed case id, which the request's own validation refuses
    first)."""
    try:
        document, _ = issue_consent_proof(
            TEST_ISSUER, case_id=case_id, sector=Sector(sector), consented_at=datetime.now(UTC)
        )
    except ValueError:
        return ""
    return document


class GrantingConsent:
    """A stand-in for intake's consent proofs (sector activity tests without
    intake): the survivor consented to everything."""

    async def proof(self, case_id: str, sector: Sector) -> str:
        return consent_proof(case_id, sector)


# --- the rightful caller of each RPC ------------------------------------------------------

SERVICES: dict[str, str] = {
    "masar.v1.IntakeService": "intake",
    "masar.v1.ShelterService": "shelter",
    "masar.v1.LegalAidService": "legal",
    "masar.v1.EmploymentService": "employment",
    "masar.v1.HealthService": "health",
    "masar.v1.PsychosocialService": "psychosocial",
}
STAFF: dict[str, Role] = {
    "shelter": Role.SHELTER_STAFF,
    "legal": Role.LEGAL_AID,
    "employment": Role.EMPLOYMENT_OFFICER,
    "health": Role.HEALTH_STAFF,
    "psychosocial": Role.PSYCHOSOCIAL_STAFF,
}
# Called by the sector's own activities (the journey's steps), and the lookup.
AS_SERVICE = frozenset(
    {
        "RequestPlacement",
        "RequestLegalAid",
        "RequestEnrolment",
        "RequestMedicalCare",
        "RequestSupport",
        "NoteCertificate",
        "RemindProvider",
        "CloseReferral",
        "PurgeCase",
        "RecordEscalation",
        "GetReferral",
    }
)
AS_COORDINATOR = frozenset(
    {
        "CreateShelter",
        "CreateProvider",
        "CreateProgramme",
        "ListShelters",
        "GetCapacity",
        "ListProviders",
        "ListProgrammes",
        "CreateCareUnit",
        "ListCareUnits",
        "CreateSupportProvider",
        "ListSupportProviders",
        "OpenEmergencyGrant",
        "ApproveEmergencyGrant",
        "RefuseEmergencyGrant",
        "RevokeEmergencyGrant",
        "ListEmergencyGrants",
    }
)
UNKNOWN_ORGANISATION = "unknown-organisation"
# The rightful intake officer's organisation (an officer's token names one).
RIGHTFUL_ORGANISATION = "org-rightful"


def _method_name(method: Any) -> str:
    return method.decode() if isinstance(method, bytes) else str(method)


def _region_of(request: Any) -> str:
    region = getattr(request, "region", "")
    return region if region in REGIONS else DEFAULT_REGION


class _RightfulCaller(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    def __init__(self, address: str) -> None:
        self._address = address
        self._lookup: grpc.aio.Channel | None = None
        self._organisations: dict[str, str] = {}

    async def close(self) -> None:
        if self._lookup is not None:
            await self._lookup.close()

    async def _organisation_of(self, service: str, full_service: str, referral_id: str) -> str:
        if referral_id in self._organisations:
            return self._organisations[referral_id]
        if self._lookup is None:
            self._lookup = authed_channel(self._address, f"service:{service}")
        get = self._lookup.unary_unary(
            f"/{full_service}/GetReferral",
            request_serializer=common_pb2.GetReferralRequest.SerializeToString,
            response_deserializer=common_pb2.GetReferralResponse.FromString,
        )
        try:
            reply = await get(common_pb2.GetReferralRequest(referral_id=referral_id))
        except grpc.aio.AioRpcError:
            return UNKNOWN_ORGANISATION  # the call itself will say what is wrong
        organisation = str(reply.referral.organisation_id) or UNKNOWN_ORGANISATION
        self._organisations[referral_id] = organisation
        return organisation

    async def token_for_call(self, method: str, request: Any) -> str | None:
        full_service, _, name = method.lstrip("/").rpartition("/")
        service = SERVICES.get(full_service)
        if service is None:
            return None  # health, reflection: open
        if name == "IssueConsentProof":
            known = SECTOR_IN.get(request.sector)
            sector = known.value if known is not None else ""
            return token_for(f"service:{sector}" if sector in STAFF else "service:shelter")
        if name in AS_SERVICE:
            return token_for(f"service:{service}")
        if name in AS_COORDINATOR:
            return token_for(Role.COORDINATOR, region=_region_of(request))
        if service == "intake":
            return token_for(Role.INTAKE_OFFICER, org=RIGHTFUL_ORGANISATION)
        if name == "ListReferrals":
            if request.organisation_id:
                return token_for(STAFF[service], org=request.organisation_id)
            return token_for(Role.COORDINATOR, region=_region_of(request))
        referral_id = getattr(request, "referral_id", "")
        organisation = (
            await self._organisation_of(service, full_service, referral_id)
            if referral_id
            else UNKNOWN_ORGANISATION
        )
        return token_for(STAFF[service], org=organisation)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        pairs = list(details.metadata or ())
        if not any(key.lower() == METADATA_KEY for key, _ in pairs):
            token = await self.token_for_call(_method_name(details.method), request)
            if token is not None:
                pairs.append((METADATA_KEY, f"Bearer {token}"))
                details = details._replace(metadata=grpc.aio.Metadata(*pairs))
        return await continuation(details, request)


class RightfulChannel:
    """A grpc.aio channel (by delegation) whose calls carry their rightful
    caller's token; see the module docstring."""

    def __init__(self, address: str) -> None:
        self._caller = _RightfulCaller(address)
        self._channel = grpc.aio.insecure_channel(address, interceptors=[self._caller])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)
        await self._caller.close()

    async def __aenter__(self) -> RightfulChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def rightful_channel(address: str) -> grpc.aio.Channel:
    # Typed as a channel: it is used exactly like one (stubs take it).
    return RightfulChannel(address)


@contextlib.asynccontextmanager
async def channels(
    address: str, identities: Iterable[tuple[Role | str, str, str]]
) -> AsyncIterator[list[grpc.aio.Channel]]:
    """Several `authed_channel`s at once, closed together."""
    opened = [authed_channel(address, role, org, region) for role, org, region in identities]
    try:
        yield opened
    finally:
        for chan in opened:
            await chan.close()
