"""The whole gRPC surface of the services (intake and its journey API,
shelter, legal, employment, health, psychosocial), walked with every role and
scope, without a token, and with expired, forged, tampered and wrong-type
tokens.

The methods come from the services' descriptors, so a method added later
without a row in ALLOWED fails this test. Each call carries a request whose
id fields point at real records (a case, a referral per sector), so that the
per-record scope checks run: a shelter's staff on a referral addressed to
another organisation's shelter, a coordinator on another region's case.

Then, per sector and on SQLite and PostgreSQL, the organisations: A runs two
providers and B one; A's staff see, list and decide the referrals of both of
A's providers and nothing of B's (and a token naming a provider's id instead
of its organisation, as tokens did before organisations, sees nothing). An allowed call may
still fail on the rest of its (incomplete) request — INVALID_ARGUMENT,
FAILED_PRECONDITION, NOT_FOUND... —: that proves it passed authorisation.
Anything not allowed must be PERMISSION_DENIED (a valid identity) or
UNAUTHENTICATED (no valid identity).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp

from masar.contract import ServiceName
from masar.platform.identity import Role, TokenIssuer
from masar.v1 import (
    common_pb2,
    employment_pb2,
    health_pb2,
    intake_pb2,
    journey_pb2,
    legal_pb2,
    psychosocial_pb2,
    shelter_pb2,
)
from services.employment import app as employment_app
from services.health import app as health_app
from services.intake import app as intake_app
from services.legal import app as legal_app
from services.psychosocial import app as psychosocial_app
from services.shelter import app as shelter_app
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.intake.support import registration
from tests.support_auth import RIGHTFUL_ORGANISATION, bearer, consent_proof, token_for

FES, RABAT = "fes-meknes", "rabat-sale-kenitra"
OK_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)
DESCRIPTORS = {
    "intake": intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],
    "shelter": shelter_pb2.DESCRIPTOR.services_by_name["ShelterService"],
    "legal": legal_pb2.DESCRIPTOR.services_by_name["LegalAidService"],
    "employment": employment_pb2.DESCRIPTOR.services_by_name["EmploymentService"],
    "journey": journey_pb2.DESCRIPTOR.services_by_name["JourneyService"],
    "health": health_pb2.DESCRIPTOR.services_by_name["HealthService"],
    "psychosocial": psychosocial_pb2.DESCRIPTOR.services_by_name["PsychosocialService"],
}
# The journey API is served by intake, beside IntakeService.
SERVED_BY = {"journey": "intake"}
# Temporal is down in this walk: an allowed journey-API call that passed
# authorisation then finds Temporal away (UNAVAILABLE).
PASSING = {"journey": OK_CODES | {grpc.StatusCode.UNAVAILABLE}}
APPS: dict[ServiceName, Any] = {
    "intake": intake_app,
    "shelter": shelter_app,
    "legal": legal_app,
    "employment": employment_app,
    "health": health_app,
    "psychosocial": psychosocial_app,
}
STAFF = {
    "shelter": "shelter_staff",
    "legal": "legal_aid",
    "employment": "employment_officer",
    "health": "health_staff",
    "psychosocial": "psychosocial_staff",
}
# Organisations of the network (opaque ids): A runs two providers of each
# sector, B one.
ORG_A, ORG_B = "org-a10000000001", "org-b20000000002"
OWNERS = (ORG_A, ORG_A, ORG_B)

# --- who may call what: the roles table, with scopes ------------------------------------
# Identities: "<role>" is in scope of the walk's records (the coordinator of
# their region, the staff of the organisation the referral is addressed to);
# "<role>@elsewhere" is the same role out of scope (staff: another
# organisation); "<staff role>@provider-id" is staff whose token names the
# referral's provider instead of its organisation: out of scope too.

# The walk's case is registered by the rightful intake officer: "intake_officer"
# and "supervisor" (of her organisation) hold it. A care unit's officer
# registered none of it. Per-organisation scopes of every intake RPC are walked
# in tests/services/intake/test_scope_walk.py.
OFFICER = {"intake_officer"}
HOLDERS = {"intake_officer", "supervisor"}
CARE_UNIT = {"care_unit_officer"}
COORD = {"coordinator"}
COORDS = {"coordinator", "coordinator@elsewhere"}


def staff(sector: str) -> set[str]:
    return {STAFF[sector]}


def any_staff(sector: str) -> set[str]:
    return {STAFF[sector], f"{STAFF[sector]}@elsewhere", f"{STAFF[sector]}@provider-id"}


def service(name: str) -> set[str]:
    return {f"service:{name}"}


def readers(sector: str) -> set[str]:
    return any_staff(sector) | COORDS | OFFICER


def common(sector: str) -> dict[str, set[str]]:
    return {
        "DecideReferral": staff(sector),
        "GetReferral": staff(sector) | COORD | service(sector),
        "ListReferrals": any_staff(sector) | COORD,
        "RemindProvider": service(sector),
        "CloseReferral": service(sector),
        "PurgeCase": service(sector),
    }


ALLOWED: dict[str, dict[str, set[str]]] = {
    "intake": {
        "RegisterCase": HOLDERS | CARE_UNIT,
        "GetCase": HOLDERS | COORD,
        "GetCaseFollowUp": HOLDERS | COORD,
        "ListCases": HOLDERS | CARE_UNIT | COORD,
        "RecordConsent": HOLDERS,
        "WithdrawConsent": HOLDERS,
        "DeclineService": HOLDERS,
        "ReassessRisk": HOLDERS,
        "RecordFollowUp": HOLDERS,
        "ConfirmMedicalCare": HOLDERS,
        "RequestClosure": HOLDERS,
        "ReopenCase": HOLDERS,
        # The walk's requests name no transfer (nor, for a request, a
        # receiving organisation): these stop at the request's checks.
        "RequestTransfer": HOLDERS,
        "DecideTransfer": HOLDERS,
        "RedirectTransfer": COORDS,
        "GetTransfer": HOLDERS | COORDS,
        "ListTransfers": HOLDERS | COORDS,
        "RecordTransferRung": service("intake"),
        "ListEscalations": HOLDERS | COORD,
        "RecordEscalation": service("intake"),
        # The request names the shelter sector: only the shelter's identity.
        "IssueConsentProof": service("shelter"),
        "OpenEmergencyGrant": COORDS,
        # The walk's requests name no grant: these stop at the request's
        # checks (who may decide or revoke which grant: test_emergency_access).
        "ApproveEmergencyGrant": COORDS | {"supervisor"},
        "RefuseEmergencyGrant": COORDS | {"supervisor"},
        "RevokeEmergencyGrant": COORDS | {"supervisor"},
        "ListEmergencyGrants": COORDS | {"supervisor"},
    },
    # Scopes per organisation, region and grant: tests/services/intake/test_journey_api.py.
    "journey": {
        "GetJourney": HOLDERS | COORD,
        "ListJourneys": HOLDERS | COORDS,
        "WatchJourneys": HOLDERS | COORDS,
        "ReassignReferral": COORD,
        "ExtendDeadline": COORD,
        "DecideClosure": COORD,
        "ReopenCase": HOLDERS,
        "RecordFollowUp": HOLDERS,
        "ChangeConsent": HOLDERS,
        "ConfirmMedicalCare": HOLDERS,
        "ReassessRisk": HOLDERS,
        "RequestClosure": HOLDERS,
    },
    "shelter": {
        **common("shelter"),
        "CreateShelter": COORD,
        "SetShelterCapacity": staff("shelter") | COORD,
        "ListShelters": readers("shelter"),
        "GetCapacity": readers("shelter"),
        "RequestPlacement": service("shelter"),
        "CheckIn": staff("shelter"),
        "CheckOut": staff("shelter"),
        "GetPlacement": staff("shelter"),
    },
    "legal": {
        **common("legal"),
        "CreateProvider": COORD,
        "ListProviders": readers("legal"),
        "RequestLegalAid": service("legal"),
        "RecordFirstMeeting": staff("legal"),
        "RecordProtectionOrder": staff("legal"),
        "RecordHearing": staff("legal"),
        "CloseMatter": staff("legal"),
        "GetLegalFile": staff("legal"),
        "NoteCertificate": service("legal"),
    },
    "employment": {
        **common("employment"),
        "CreateProgramme": COORD,
        "SetProgrammeSeats": staff("employment") | COORD,
        "ListProgrammes": readers("employment"),
        "RequestEnrolment": service("employment"),
        "StartEnrolment": staff("employment"),
        "CompleteTraining": staff("employment"),
        "RecordJobPlacement": staff("employment"),
        "GetEnrolment": staff("employment"),
    },
    "health": {
        **common("health"),
        "CreateCareUnit": COORD,
        "ListCareUnits": readers("health"),
        "RequestMedicalCare": service("health"),
        "StartCare": staff("health"),
        "RecordPep": staff("health"),
        "RecordEmergencyContraception": staff("health"),
        "RecordForensicExam": staff("health"),
        "IssueCertificate": staff("health"),
        "RecordFollowUpVisit": staff("health"),
        "CompleteCare": staff("health"),
        "GetCareRecord": staff("health"),
    },
    "psychosocial": {
        **common("psychosocial"),
        "CreateSupportProvider": COORD,
        "ListSupportProviders": readers("psychosocial"),
        "RequestSupport": service("psychosocial"),
        "RecordSession": staff("psychosocial"),
        "SetSupportPlan": staff("psychosocial"),
        "ReviewSupportPlan": staff("psychosocial"),
        "CompleteSupport": staff("psychosocial"),
        "GetSupportFile": staff("psychosocial"),
    },
}


# --- the world the walk acts on ------------------------------------------------------------


@dataclass
class World:
    sectors: dict[str, RunningSector]
    case_id: str
    referrals: dict[str, str]  # sector -> referral id (to one of ORG_A's providers)
    providers: dict[str, str]  # sector -> the referral's provider

    def identities(self) -> dict[str, str]:
        """Identity name -> a valid token."""
        tokens = {
            "intake_officer": token_for(Role.INTAKE_OFFICER, org=RIGHTFUL_ORGANISATION),
            "supervisor": token_for(Role.SUPERVISOR, org=RIGHTFUL_ORGANISATION),
            "care_unit_officer": token_for(Role.CARE_UNIT_OFFICER, org="care-unit-fes"),
            "coordinator": token_for(Role.COORDINATOR, region=FES),
            "coordinator@elsewhere": token_for(Role.COORDINATOR, region=RABAT),
            "operator": token_for(Role.OPERATOR),
        }
        for sector, role in STAFF.items():
            tokens[role] = token_for(role, org=ORG_A)
            tokens[f"{role}@elsewhere"] = token_for(role, org=ORG_B)
            tokens[f"{role}@provider-id"] = token_for(role, org=self.providers[sector])
        for name in APPS:
            tokens[f"service:{name}"] = token_for(f"service:{name}")
        return tokens


def _bad_tokens() -> dict[str, str | None]:
    """Tokens that name nobody: each must be UNAUTHENTICATED."""
    now = datetime.now(UTC)
    expired = token_for(
        Role.COORDINATOR, region=FES, ttl=timedelta(hours=1), now=now - timedelta(hours=2)
    )
    forged = TokenIssuer.generate().issue(role=Role.COORDINATOR, region=FES)
    header, _, signature = token_for(Role.OPERATOR).split(".")
    claims = {
        "iss": "masar",
        "sub": "intruder",
        "role": "coordinator",
        "org": "",
        "region": FES,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 3600,
    }
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return {
        "no token": None,
        "expired": expired,
        "forged": forged,
        "tampered": f"{header}.{body}.{signature}",
        # A consent proof is signed by the same key, but is no bearer token.
        "consent proof": consent_proof(secrets.token_hex(8), "shelter"),
        "garbage": "not-a-token",
    }


def _request_for(method: MethodDescriptor, world: World, sector: str) -> Any:
    """The method's request, its id fields pointing at the walk's records."""
    cls = GetMessageClass(method.input_type)
    request: Any = cls()
    fields = method.input_type.fields_by_name
    values: dict[str, Any] = {
        "case_id": world.case_id,
        "referral_id": world.referrals.get(sector, world.referrals["shelter"]),
        "region": FES,
        "idempotency_key": f"walk-{secrets.token_hex(8)}",
        # A provider's own RPCs (capacity, seats) name it: the walk's, so a
        # refusal is about who calls, never a malformed id.
        "shelter_id": world.providers.get("shelter", ""),
        "programme_id": world.providers.get("employment", ""),
    }
    for name, value in values.items():
        field = fields.get(name)
        if field is not None and field.type == FieldDescriptor.TYPE_STRING:
            setattr(request, name, value)
    if "sector" in fields:
        request.sector = common_pb2.SECTOR_SHELTER
    return request


async def _call(
    channel: grpc.aio.Channel,
    full_method: str,
    request: Any,
    token: str | None,
    *,
    streaming: bool = False,
) -> grpc.StatusCode:
    if streaming:  # a server stream: its first message (or its refusal) decides
        stream = channel.unary_stream(
            full_method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=lambda raw: raw,
        )(request, metadata=bearer(token) if token is not None else None, timeout=20)
        try:
            await stream.read()
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            stream.cancel()
        return grpc.StatusCode.OK
    call = channel.unary_unary(
        full_method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=lambda raw: raw,
    )
    try:
        await call(request, metadata=bearer(token) if token is not None else None, timeout=20)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def world(tmp_path, sqlite_url) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        sectors: dict[str, RunningSector] = {}
        for name, app in APPS.items():
            settings = sector_settings(name, tmp_path / name, f"sqlite:///{tmp_path / name}.db")
            sectors[name] = await stack.enter_async_context(
                running_sector(settings, app.build_components, app.MIGRATIONS_DIR)
            )
        yield await _populate(sectors)


async def _populate(sectors: dict[str, RunningSector]) -> World:
    intake = sectors["intake"].channel
    reply = await intake.unary_unary(
        "/masar.v1.IntakeService/RegisterCase",
        request_serializer=intake_pb2.RegisterCaseRequest.SerializeToString,
        response_deserializer=intake_pb2.RegisterCaseResponse.FromString,
    )(registration())
    case_id = reply.case.summary.case_id
    referrals, providers = {}, {}
    for sector in CREATIONS:
        channel = sectors[sector].channel
        ids = [await _create_provider(channel, sector, i, org) for i, org in enumerate(OWNERS)]
        made = await _request_referral(channel, sector, case_id, provider_id=ids[0])
        referrals[sector] = made.referral_id
        providers[sector] = made.provider_id
    return World(sectors, case_id, referrals, providers)


def _start_date() -> Timestamp:
    start = Timestamp()
    start.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    return start


# How each sector registers its provider number `i`, run by the organisation `org`.
CREATIONS: dict[str, Any] = {
    "shelter": lambda i, org: shelter_pb2.CreateShelterRequest(
        name=f"Dar {i}",
        region=FES,
        capacity=4,
        accepts_children=True,
        address="secret",
        idempotency_key=f"s{i}",
        organisation_id=org,
    ),
    "legal": lambda i, org: legal_pb2.CreateLegalProviderRequest(
        kind=legal_pb2.LEGAL_PROVIDER_KIND_LAWYER,
        name=f"Lawyer {i}",
        region=FES,
        languages=["ary"],
        matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
        idempotency_key=f"l{i}",
        organisation_id=org,
    ),
    "employment": lambda i, org: employment_pb2.CreateProgrammeRequest(
        name=f"Atelier {i}",
        kind=employment_pb2.PROGRAMME_KIND_SEWING,
        region=FES,
        seats=3,
        start_date=_start_date(),
        languages=["ary"],
        idempotency_key=f"e{i}",
        organisation_id=org,
    ),
    "health": lambda i, org: health_pb2.CreateCareUnitRequest(
        name=f"Unité {i}",
        region=FES,
        services=[health_pb2.CARE_SERVICE_PEP, health_pb2.CARE_SERVICE_CERTIFICATE],
        languages=["ary"],
        idempotency_key=f"h{i}",
        organisation_id=org,
    ),
    "psychosocial": lambda i, org: psychosocial_pb2.CreateSupportProviderRequest(
        name=f"Écoute {i}",
        region=FES,
        kinds=[psychosocial_pb2.SUPPORT_KIND_COUNSELLING],
        languages=["ary"],
        idempotency_key=f"p{i}",
        organisation_id=org,
    ),
}


def _unary(channel: grpc.aio.Channel, sector: str, prefix: str, request: Any) -> Any:
    """The sector's RPC whose name starts with `prefix` (Create..., Request...)."""
    descriptor = DESCRIPTORS[sector]
    method = next(m for m in descriptor.methods if m.name.startswith(prefix))
    return channel.unary_unary(
        f"/{descriptor.full_name}/{method.name}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )(request)


async def _create_provider(channel: grpc.aio.Channel, sector: str, i: int, org: str) -> str:
    """Register a provider (as the region's coordinator) and return its id."""
    created = await _unary(channel, sector, "Create", CREATIONS[sector](i, org))
    inner = created.ListFields()[0][1]
    assert inner.organisation_id == org
    return str(
        next(
            getattr(inner, f)
            for f in ("shelter_id", "provider_id", "programme_id", "care_unit_id")
            if hasattr(inner, f)
        )
    )


async def _request_referral(
    channel: grpc.aio.Channel, sector: str, case_id: str, *, provider_id: str
) -> common_pb2.Referral:
    """A referral of the case to the named provider (as the sector's service identity)."""
    requests: dict[str, Any] = {
        "shelter": shelter_pb2.RequestPlacementRequest(
            needs=shelter_pb2.ShelterNeeds(household_size=1)
        ),
        "legal": legal_pb2.RequestLegalAidRequest(
            needs=legal_pb2.LegalNeeds(matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER])
        ),
        "employment": employment_pb2.RequestEnrolmentRequest(),
        "health": health_pb2.RequestMedicalCareRequest(),
        "psychosocial": psychosocial_pb2.RequestSupportRequest(),
    }
    request = requests[sector]
    request.case_id = case_id
    request.region = FES
    request.risk = common_pb2.RISK_LEVEL_HIGH
    request.idempotency_key = f"walk-{sector}-{provider_id}"
    request.consent_proof = consent_proof(case_id, sector)
    request.provider_id = provider_id
    made = await _unary(channel, sector, "Request", request)
    referral: common_pb2.Referral = made.referral
    assert referral.provider_id == provider_id
    return referral


async def test_every_method_of_every_service_admits_exactly_its_roles(world: World) -> None:
    identities = world.identities()
    bad = _bad_tokens()
    wrong: list[str] = []
    seen: Counter[grpc.StatusCode] = Counter()
    for sector, descriptor in DESCRIPTORS.items():
        table = ALLOWED[sector]
        names = {m.name for m in descriptor.methods}
        # The table covers the whole surface, and nothing that does not exist.
        assert set(table) == names, (sector, names ^ set(table))
        port = world.sectors[SERVED_BY.get(sector, sector)].process.port
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        passing = PASSING.get(sector, OK_CODES)
        try:
            for method in descriptor.methods:
                full = f"/{descriptor.full_name}/{method.name}"
                streaming = method.server_streaming
                for who, token in identities.items():
                    request = _request_for(method, world, sector)
                    code = await _call(channel, full, request, token, streaming=streaming)
                    seen[code] += 1
                    allowed = who in table[method.name]
                    if allowed and code not in passing:
                        wrong.append(f"{full} as {who}: {code.name}, expected to pass")
                    if not allowed and code != grpc.StatusCode.PERMISSION_DENIED:
                        wrong.append(f"{full} as {who}: {code.name}, expected PERMISSION_DENIED")
                for what, bad_token in bad.items():
                    code = await _call(
                        channel,
                        full,
                        _request_for(method, world, sector),
                        bad_token,
                        streaming=streaming,
                    )
                    if code != grpc.StatusCode.UNAUTHENTICATED:
                        wrong.append(f"{full} with {what}: {code.name}, expected UNAUTHENTICATED")
        finally:
            await channel.close()
    assert not wrong, "\n".join(wrong)
    # The walk did reach the handlers: whole calls succeeded, others were refused.
    assert seen[grpc.StatusCode.OK] >= 20 and seen[grpc.StatusCode.PERMISSION_DENIED] >= 500, seen


# --- per organisation: staff act on their organisation's referrals, of every provider ------


class _Shared:
    """The RPCs of common.proto on one sector's service, through `channel`."""

    def __init__(self, channel: grpc.aio.Channel, sector: str) -> None:
        self.channel = channel
        self.service = DESCRIPTORS[sector].full_name

    def _rpc(self, name: str, response: Any) -> Any:
        return self.channel.unary_unary(
            f"/{self.service}/{name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    async def get(self, referral_id: str) -> common_pb2.Referral:
        reply = await self._rpc("GetReferral", common_pb2.GetReferralResponse)(
            common_pb2.GetReferralRequest(referral_id=referral_id)
        )
        referral: common_pb2.Referral = reply.referral
        return referral

    async def listed(self, **filters: Any) -> set[str]:
        reply = await self._rpc("ListReferrals", common_pb2.ListReferralsResponse)(
            common_pb2.ListReferralsRequest(**filters)
        )
        return {r.referral_id for r in reply.referrals}

    async def decide(self, referral_id: str, *, accept: bool = True) -> common_pb2.Referral:
        reply = await self._rpc("DecideReferral", common_pb2.DecideReferralResponse)(
            common_pb2.DecideReferralRequest(
                referral_id=referral_id,
                decision=common_pb2.DECISION_ACCEPT if accept else common_pb2.DECISION_DECLINE,
                decline_reason=(
                    common_pb2.DECLINE_REASON_UNSPECIFIED
                    if accept
                    else common_pb2.DECLINE_REASON_NO_CAPACITY
                ),
                idempotency_key=f"decide-{referral_id}",
            )
        )
        referral: common_pb2.Referral = reply.referral
        return referral


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


@pytest.mark.parametrize("sector", list(CREATIONS))
async def test_staff_act_on_every_referral_of_their_organisation_and_on_no_other(
    tmp_path, database_url, sector: ServiceName
) -> None:
    app = APPS[sector]
    settings = sector_settings(sector, tmp_path, database_url)
    async with running_sector(settings, app.build_components, app.MIGRATIONS_DIR) as running:
        # A runs two providers, B one; one referral (one case) to each.
        a1, a2, b1 = [
            await _create_provider(running.channel, sector, i, org) for i, org in enumerate(OWNERS)
        ]
        made = {
            provider: await _request_referral(
                running.channel, sector, secrets.token_hex(8), provider_id=provider
            )
            for provider in (a1, a2, b1)
        }
        assert [made[p].organisation_id for p in (a1, a2, b1)] == [ORG_A, ORG_A, ORG_B]
        to_a1, to_a2, to_b = (made[p].referral_id for p in (a1, a2, b1))
        staff = Role(STAFF[sector])
        as_a = _Shared(running.channel_as(staff, org=ORG_A), sector)
        as_b = _Shared(running.channel_as(staff, org=ORG_B), sector)
        as_provider = _Shared(running.channel_as(staff, org=a1), sector)
        coordinator = _Shared(running.channel_as(Role.COORDINATOR, region=FES), sector)
        elsewhere = _Shared(running.channel_as(Role.COORDINATOR, region=RABAT), sector)

        # A's staff read the referrals of both of A's providers, not B's; an
        # unknown referral is NOT_FOUND (the existing rule: looked up first).
        assert {(await as_a.get(r)).referral_id for r in (to_a1, to_a2)} == {to_a1, to_a2}
        secrets_of_b = (to_b, b1, made[b1].case_id, ORG_B)
        for call in (as_a.get(to_b), as_a.decide(to_b)):
            err = await _refused(call)
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            shown = f"{err.details()} {err.trailing_metadata()}"
            assert not [s for s in secrets_of_b if s in shown], shown
        unknown = f"{to_b[:4]}0123456789abcdef"
        assert (await _refused(as_a.get(unknown))).code() == grpc.StatusCode.NOT_FOUND
        # B's refused decision wrote nothing.
        assert (await coordinator.get(to_b)).status == common_pb2.REFERRAL_STATUS_PENDING

        # A's staff decide on both of A's providers' referrals; B's on B's.
        assert (await as_a.decide(to_a1)).status == common_pb2.REFERRAL_STATUS_ACCEPTED
        assert (await as_a.decide(to_a2, accept=False)).status == (
            common_pb2.REFERRAL_STATUS_DECLINED
        )
        assert (await as_b.decide(to_b)).status == common_pb2.REFERRAL_STATUS_ACCEPTED
        assert (await _refused(as_b.get(to_a1))).code() == grpc.StatusCode.PERMISSION_DENIED

        # Listings: staff exactly their organisation's, whatever they filter on.
        assert await as_a.listed() == {to_a1, to_a2}
        assert await as_a.listed(organisation_id=ORG_A) == {to_a1, to_a2}
        assert await as_a.listed(provider_id=a2) == {to_a2}
        assert await as_a.listed(provider_id=b1) == set()
        assert await as_a.listed(case_id=made[b1].case_id) == set()
        assert await as_b.listed() == {to_b}
        err = await _refused(as_a.listed(organisation_id=ORG_B))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        # Coordinators: their region, any organisation (or one of them).
        assert await coordinator.listed() == {to_a1, to_a2, to_b}
        assert await coordinator.listed(organisation_id=ORG_A) == {to_a1, to_a2}
        assert await elsewhere.listed() == set()
        err = await _refused(coordinator.listed(organisation_id="not an id"))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_field(err) == "organisation_id"

        # A token naming a provider instead of its organisation sees nothing.
        assert await as_provider.listed() == set()
        err = await _refused(as_provider.get(to_a1))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
