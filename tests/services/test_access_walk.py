"""The whole gRPC surface of the four services, walked with every role and
scope, without a token, and with expired, forged, tampered and wrong-type
tokens.

The methods come from the services' descriptors, so a method added later
without a row in ALLOWED fails this test. Each call carries a request whose
id fields point at real records (a case, a referral per sector), so that the
per-record scope checks run: a shelter's staff on a referral addressed to
another shelter, a coordinator on another region's case. An allowed call may
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
    intake_pb2,
    legal_pb2,
    shelter_pb2,
)
from services.employment import app as employment_app
from services.intake import app as intake_app
from services.legal import app as legal_app
from services.shelter import app as shelter_app
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.services.intake.support import registration
from tests.support_auth import bearer, consent_proof, token_for

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
}
APPS: dict[ServiceName, Any] = {
    "intake": intake_app,
    "shelter": shelter_app,
    "legal": legal_app,
    "employment": employment_app,
}
STAFF = {"shelter": "shelter_staff", "legal": "legal_aid", "employment": "employment_officer"}

# --- who may call what: the roles table, with scopes ------------------------------------
# Identities: "<role>" is in scope of the walk's records (the coordinator of
# their region, the staff of the provider the referral is addressed to);
# "<role>@elsewhere" is the same role out of scope.

# The walk's case is registered by an intake officer whose token names no
# organisation: "intake_officer" and "supervisor" (no organisation either)
# hold it. A care unit's officer registered none of it. Per-organisation
# scopes of every intake RPC are walked in tests/services/intake/test_scope_walk.py.
OFFICER = {"intake_officer"}
HOLDERS = {"intake_officer", "supervisor"}
CARE_UNIT = {"care_unit_officer"}
COORD = {"coordinator"}
COORDS = {"coordinator", "coordinator@elsewhere"}


def staff(sector: str) -> set[str]:
    return {STAFF[sector]}


def any_staff(sector: str) -> set[str]:
    return {STAFF[sector], f"{STAFF[sector]}@elsewhere"}


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
        "RevokeEmergencyGrant": COORDS,
    },
    "shelter": {
        **common("shelter"),
        "CreateShelter": COORD,
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
    },
    "employment": {
        **common("employment"),
        "CreateProgramme": COORD,
        "ListProgrammes": readers("employment"),
        "RequestEnrolment": service("employment"),
        "StartEnrolment": staff("employment"),
        "CompleteTraining": staff("employment"),
        "RecordJobPlacement": staff("employment"),
        "GetEnrolment": staff("employment"),
    },
}


# --- the world the walk acts on ------------------------------------------------------------


@dataclass
class World:
    sectors: dict[str, RunningSector]
    case_id: str
    referrals: dict[str, str]  # sector -> referral id
    providers: dict[str, str]  # sector -> the referral's provider
    others: dict[str, str]  # sector -> another provider of the same region

    def identities(self) -> dict[str, str]:
        """Identity name -> a valid token."""
        tokens = {
            "intake_officer": token_for(Role.INTAKE_OFFICER),
            "supervisor": token_for(Role.SUPERVISOR),
            "care_unit_officer": token_for(Role.CARE_UNIT_OFFICER, org="care-unit-fes"),
            "coordinator": token_for(Role.COORDINATOR, region=FES),
            "coordinator@elsewhere": token_for(Role.COORDINATOR, region=RABAT),
            "operator": token_for(Role.OPERATOR),
        }
        for sector, role in STAFF.items():
            tokens[role] = token_for(role, org=self.providers[sector])
            tokens[f"{role}@elsewhere"] = token_for(role, org=self.others[sector])
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
    }
    for name, value in values.items():
        field = fields.get(name)
        if field is not None and field.type == FieldDescriptor.TYPE_STRING:
            setattr(request, name, value)
    if "sector" in fields:
        request.sector = common_pb2.SECTOR_SHELTER
    return request


async def _call(
    channel: grpc.aio.Channel, full_method: str, request: Any, token: str | None
) -> grpc.StatusCode:
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
    referrals, providers, others = {}, {}, {}
    start = Timestamp()
    start.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    creations = {
        "shelter": lambda i: shelter_pb2.CreateShelterRequest(
            name=f"Dar {i}",
            region=FES,
            capacity=4,
            accepts_children=True,
            address="secret",
            idempotency_key=f"s{i}",
        ),
        "legal": lambda i: legal_pb2.CreateLegalProviderRequest(
            kind=legal_pb2.LEGAL_PROVIDER_KIND_LAWYER,
            name=f"Lawyer {i}",
            region=FES,
            languages=["ary"],
            matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
            idempotency_key=f"l{i}",
        ),
        "employment": lambda i: employment_pb2.CreateProgrammeRequest(
            name=f"Atelier {i}",
            kind=employment_pb2.PROGRAMME_KIND_SEWING,
            region=FES,
            seats=3,
            start_date=start,
            languages=["ary"],
            idempotency_key=f"e{i}",
        ),
    }
    requests: dict[str, Any] = {
        "shelter": shelter_pb2.RequestPlacementRequest(
            needs=shelter_pb2.ShelterNeeds(household_size=1)
        ),
        "legal": legal_pb2.RequestLegalAidRequest(
            needs=legal_pb2.LegalNeeds(matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER])
        ),
        "employment": employment_pb2.RequestEnrolmentRequest(),
    }
    for sector, create in creations.items():
        descriptor = DESCRIPTORS[sector]
        channel = sectors[sector].channel
        create_method = next(m for m in descriptor.methods if m.name.startswith("Create"))
        ids = []
        for i in range(2):
            created = await channel.unary_unary(
                f"/{descriptor.full_name}/{create_method.name}",
                request_serializer=type(create(i)).SerializeToString,
                response_deserializer=GetMessageClass(create_method.output_type).FromString,
            )(create(i))
            inner = created.ListFields()[0][1]
            ids.append(
                next(
                    getattr(inner, f)
                    for f in ("shelter_id", "provider_id", "programme_id")
                    if hasattr(inner, f)
                )
            )
        request = requests[sector]
        request.case_id = case_id
        request.region = FES
        request.risk = common_pb2.RISK_LEVEL_HIGH
        request.idempotency_key = f"walk-{sector}"
        request.consent_proof = consent_proof(case_id, sector)
        ask = next(m for m in descriptor.methods if m.name.startswith("Request"))
        made = await channel.unary_unary(
            f"/{descriptor.full_name}/{ask.name}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=GetMessageClass(ask.output_type).FromString,
        )(request)
        referrals[sector] = made.referral.referral_id
        providers[sector] = made.referral.provider_id
        others[sector] = next(i for i in ids if i != made.referral.provider_id)
    return World(sectors, case_id, referrals, providers, others)


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
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{world.sectors[sector].process.port}")
        try:
            for method in descriptor.methods:
                full = f"/{descriptor.full_name}/{method.name}"
                for who, token in identities.items():
                    code = await _call(channel, full, _request_for(method, world, sector), token)
                    seen[code] += 1
                    allowed = who in table[method.name]
                    if allowed and code not in OK_CODES:
                        wrong.append(f"{full} as {who}: {code.name}, expected to pass")
                    if not allowed and code != grpc.StatusCode.PERMISSION_DENIED:
                        wrong.append(f"{full} as {who}: {code.name}, expected PERMISSION_DENIED")
                for what, bad_token in bad.items():
                    code = await _call(
                        channel, full, _request_for(method, world, sector), bad_token
                    )
                    if code != grpc.StatusCode.UNAUTHENTICATED:
                        wrong.append(f"{full} with {what}: {code.name}, expected UNAUTHENTICATED")
        finally:
            await channel.close()
    assert not wrong, "\n".join(wrong)
    # The walk did reach the handlers: whole calls succeeded, others were refused.
    assert seen[grpc.StatusCode.OK] >= 20 and seen[grpc.StatusCode.PERMISSION_DENIED] >= 500, seen
