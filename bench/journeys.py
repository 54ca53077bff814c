"""Driving journeys through the real APIs, as intake officers and sector staff do.

Registration goes through intake's RegisterCase; staff find a case's referral
in their own sector's ListReferrals and decide through DecideReferral; the
journey's state is read with its `status` query. Shared by the benchmarks and
the fault-injection tests.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from temporalio.client import Client

from masar import contract as c
from masar.platform.identity import METADATA_KEY, Role, TokenIssuer
from masar.v1 import (
    common_pb2,
    employment_pb2,
    employment_pb2_grpc,
    intake_pb2,
    intake_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)

T = TypeVar("T")

REGION = "fes-meknes"
MAX_SHELTER_BEDS = 500  # services/shelter/domain.py MAX_CAPACITY
MAX_PROGRAMME_SEATS = 1000  # services/employment/domain.py MAX_SEATS
BEDS_PER_CASE = 2  # the survivor and one child (register_request)

_SECTOR_PB = {
    "shelter": common_pb2.SECTOR_SHELTER,
    "legal": common_pb2.SECTOR_LEGAL,
    "employment": common_pb2.SECTOR_EMPLOYMENT,
}
_SCOPE_PB = {
    "shelter": intake_pb2.CONSENT_SCOPE_SHELTER,
    "legal": intake_pb2.CONSENT_SCOPE_LEGAL,
    "employment": intake_pb2.CONSENT_SCOPE_EMPLOYMENT,
}
PB_STATUS = {
    common_pb2.REFERRAL_STATUS_PENDING: c.ReferralStatus.PENDING,
    common_pb2.REFERRAL_STATUS_ACCEPTED: c.ReferralStatus.ACCEPTED,
    common_pb2.REFERRAL_STATUS_DECLINED: c.ReferralStatus.DECLINED,
    common_pb2.REFERRAL_STATUS_IN_SERVICE: c.ReferralStatus.IN_SERVICE,
    common_pb2.REFERRAL_STATUS_COMPLETED: c.ReferralStatus.COMPLETED,
    common_pb2.REFERRAL_STATUS_REROUTED: c.ReferralStatus.REROUTED,
    common_pb2.REFERRAL_STATUS_EXPIRED: c.ReferralStatus.EXPIRED,
    common_pb2.REFERRAL_STATUS_WITHDRAWN: c.ReferralStatus.WITHDRAWN,
}


def key() -> str:
    return secrets.token_hex(8)


# Who does what. Staff tokens name their organisation (the provider the
# referral is addressed to); a coordinator of the region finds referrals.
STAFF_ROLES = {
    "shelter": Role.SHELTER_STAFF,
    "legal": Role.LEGAL_AID,
    "employment": Role.EMPLOYMENT_OFFICER,
}
SEED_ROLE = Role.COORDINATOR  # creates shelters, legal providers, programmes
FINDER_ROLE = Role.COORDINATOR


class Credentials:
    """Signed bearer tokens for simulated people, one per (role, org, region)."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self._tokens: dict[tuple[str, str, str], str] = {}

    def metadata(self, role: Role, *, org: str = "", region: str = "") -> tuple[tuple[str, str]]:
        cache = (role.value, org, region)
        token = self._tokens.get(cache)
        if token is None:
            token = self.issuer.issue(role=role, org=org, region=region)
            self._tokens[cache] = token
        return ((METADATA_KEY, f"Bearer {token}"),)


@dataclass
class Stubs:
    """The four services' gRPC stubs (channels owned by the caller) and the
    credentials calls are made with."""

    intake: intake_pb2_grpc.IntakeServiceStub
    shelter: shelter_pb2_grpc.ShelterServiceStub
    legal: legal_pb2_grpc.LegalAidServiceStub
    employment: employment_pb2_grpc.EmploymentServiceStub
    credentials: Credentials

    @classmethod
    def of(cls, channel: Callable[[str], grpc.aio.Channel], issuer: TokenIssuer) -> Stubs:
        return cls(
            intake=intake_pb2_grpc.IntakeServiceStub(channel("intake")),
            shelter=shelter_pb2_grpc.ShelterServiceStub(channel("shelter")),
            legal=legal_pb2_grpc.LegalAidServiceStub(channel("legal")),
            employment=employment_pb2_grpc.EmploymentServiceStub(channel("employment")),
            credentials=Credentials(issuer),
        )

    def sector(self, sector: str) -> Any:
        return getattr(self, sector)

    def as_(self, role: Role, *, org: str = "", region: str = REGION) -> tuple[tuple[str, str]]:
        return self.credentials.metadata(role, org=org, region=region)

    def staff(self, sector: str, referral: common_pb2.Referral) -> tuple[tuple[str, str]]:
        """The sector's staff of the provider the referral is addressed to."""
        return self.as_(STAFF_ROLES[sector], org=referral.organisation_id, region=referral.region)


BENCH_ORGANISATION = "org-0000000be0c4"


# --- reference data --------------------------------------------------------------------


async def seed_shelters(stubs: Stubs, *, region: str = REGION, beds: int = 12) -> list[str]:
    """Shelters in `region` with at least `beds` beds in all."""
    ids = []
    for i in range(max(1, math.ceil(beds / MAX_SHELTER_BEDS))):
        reply = await stubs.shelter.CreateShelter(
            shelter_pb2.CreateShelterRequest(
                name=f"Shelter {i}",
                region=region,
                capacity=min(beds, MAX_SHELTER_BEDS),
                accepts_children=True,
                address=f"confidential address {i}",
                organisation_id=f"org-shelter-{region}",
                idempotency_key=f"seed-shelter-{region}-{i}-{key()}",
            ),
            metadata=stubs.as_(SEED_ROLE, region=region),
        )
        ids.append(reply.shelter.shelter_id)
    return ids


async def seed_legal(stubs: Stubs, *, region: str = REGION, providers: int = 2) -> list[str]:
    ids = []
    for i in range(providers):
        reply = await stubs.legal.CreateProvider(
            legal_pb2.CreateLegalProviderRequest(
                kind=legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION,
                name=f"Association {i}",
                region=region,
                languages=["ar", "ary", "fr"],
                matters=[
                    legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
                    legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT,
                ],
                organisation_id=f"org-legal-{region}",
                idempotency_key=f"seed-legal-{region}-{i}-{key()}",
            ),
            metadata=stubs.as_(SEED_ROLE, region=region),
        )
        ids.append(reply.provider.provider_id)
    return ids


async def seed_programmes(stubs: Stubs, *, region: str = REGION, seats: int = 10) -> list[str]:
    ids = []
    for i in range(max(1, math.ceil(seats / MAX_PROGRAMME_SEATS))):
        request = employment_pb2.CreateProgrammeRequest(
            name=f"Couture {i}",
            kind=employment_pb2.PROGRAMME_KIND_SEWING,
            region=region,
            seats=min(seats, MAX_PROGRAMME_SEATS),
            languages=["ar", "ary", "fr"],
            organisation_id=f"org-training-{region}",
            idempotency_key=f"seed-programme-{region}-{i}-{key()}",
        )
        request.start_date.GetCurrentTime()
        reply = await stubs.employment.CreateProgramme(
            request, metadata=stubs.as_(SEED_ROLE, region=region)
        )
        ids.append(reply.programme.programme_id)
    return ids


async def seed_region(
    stubs: Stubs, *, region: str = REGION, cases: int = 10, sectors: tuple[str, ...] = ()
) -> None:
    """Enough providers in `region` for `cases` journeys in every sector
    named (default: all three)."""
    sectors = sectors or ("shelter", "legal", "employment")
    if "shelter" in sectors:
        await seed_shelters(stubs, region=region, beds=max(12, cases * BEDS_PER_CASE))
    if "legal" in sectors:
        await seed_legal(stubs, region=region)
    if "employment" in sectors:
        await seed_programmes(stubs, region=region, seats=max(10, cases))


# --- cases and referrals ------------------------------------------------------------------


def register_request(
    *,
    region: str = REGION,
    needs: tuple[str, ...] = ("shelter", "legal", "employment"),
    consents: tuple[str, ...] | None = None,
    risk: str = "high",
) -> intake_pb2.RegisterCaseRequest:
    consents = needs if consents is None else consents
    request = intake_pb2.RegisterCaseRequest(
        idempotency_key=f"reg-{key()}",
        survivor=intake_pb2.SurvivorProfile(
            alias="",
            birth_year=1994,
            region=region,
            languages=["ary"],
            contact=intake_pb2.ContactDetails(),
            accompanying_children=BEDS_PER_CASE - 1,
        ),
        incident=intake_pb2.Incident(
            violence_type=intake_pb2.VIOLENCE_TYPE_PHYSICAL_ASSAULT,
            contexts=[intake_pb2.INCIDENT_CONTEXT_INTIMATE_PARTNER],
        ),
        risk=intake_pb2.RiskAssessmentInput(checklist=_all_answered()),
        needs=[_SECTOR_PB[n] for n in needs],
        consents=[_SCOPE_PB[n] for n in consents],
        legal_matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
        employment_interests=["sewing"],
    )
    if risk != "low":
        request.risk.override.level = common_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk.upper()}")
        request.risk.override.reason = "professional judgement"
    request.incident.occurred_at.FromSeconds(int(time.time() // 3600 * 3600) - 24 * 3600)
    return request


def _all_answered() -> intake_pb2.RiskChecklist:
    checklist = intake_pb2.RiskChecklist()
    for field in checklist.DESCRIPTOR.fields:
        setattr(checklist, field.name, intake_pb2.RISK_ANSWER_NO)
    return checklist


async def register(stubs: Stubs, **options: Any) -> str:
    request = register_request(**options)
    # An officer's token names her organisation (the bench's own).
    officer = stubs.as_(Role.INTAKE_OFFICER, org=BENCH_ORGANISATION, region=request.survivor.region)
    reply = await stubs.intake.RegisterCase(request, metadata=officer)
    return str(reply.case.summary.case_id)


async def referrals_of(
    stubs: Stubs, sector: str, case_id: str, *, region: str = REGION
) -> list[common_pb2.Referral]:
    """A case's referrals in a sector, as the region's coordinator lists them."""
    reply = await stubs.sector(sector).ListReferrals(
        common_pb2.ListReferralsRequest(case_id=case_id),
        metadata=stubs.as_(FINDER_ROLE, region=region),
    )
    return list(reply.referrals)


async def wait_referral(
    stubs: Stubs,
    sector: str,
    case_id: str,
    *,
    status: int = common_pb2.REFERRAL_STATUS_PENDING,
    within: float = 60.0,
    interval: float = 0.1,
) -> common_pb2.Referral:
    """Poll the sector's own list, as its staff would, until the case has a
    referral in `status`."""

    async def find() -> common_pb2.Referral | None:
        for referral in await referrals_of(stubs, sector, case_id):
            if referral.status == status:
                return referral
        return None

    return await poll(find, within=within, interval=interval, what=f"{sector} referral")


async def decide(
    stubs: Stubs, sector: str, referral: common_pb2.Referral, *, accept: bool = True
) -> common_pb2.DecideReferralResponse:
    request = common_pb2.DecideReferralRequest(
        referral_id=referral.referral_id,
        decision=common_pb2.DECISION_ACCEPT if accept else common_pb2.DECISION_DECLINE,
        decline_reason=(
            common_pb2.DECLINE_REASON_UNSPECIFIED
            if accept
            else common_pb2.DECLINE_REASON_NO_CAPACITY
        ),
        idempotency_key=f"decide-{key()}",
    )
    reply: common_pb2.DecideReferralResponse = await stubs.sector(sector).DecideReferral(
        request, metadata=stubs.staff(sector, referral)
    )
    return reply


async def check_in(stubs: Stubs, referral: common_pb2.Referral) -> shelter_pb2.CheckInResponse:
    reply: shelter_pb2.CheckInResponse = await stubs.shelter.CheckIn(
        shelter_pb2.CheckInRequest(referral_id=referral.referral_id, idempotency_key=f"in-{key()}"),
        metadata=stubs.staff("shelter", referral),
    )
    return reply


async def start_enrolment(
    stubs: Stubs, referral: common_pb2.Referral
) -> employment_pb2.StartEnrolmentResponse:
    reply: employment_pb2.StartEnrolmentResponse = await stubs.employment.StartEnrolment(
        employment_pb2.StartEnrolmentRequest(
            referral_id=referral.referral_id, idempotency_key=f"start-{key()}"
        ),
        metadata=stubs.staff("employment", referral),
    )
    return reply


# --- the journey's side ----------------------------------------------------------------------


async def status(client: Client, case_id: str) -> c.JourneyStatus:
    handle = client.get_workflow_handle(c.journey_workflow_id(case_id))
    return await handle.query(c.QUERY_STATUS, result_type=c.JourneyStatus)


def referral_view(
    journey: c.JourneyStatus, referral_id: str, *statuses: c.ReferralStatus
) -> c.ReferralView | None:
    for ref in journey.referrals:
        if ref.referral_id == referral_id and (not statuses or ref.status in statuses):
            return ref
    return None


async def wait_status(
    client: Client,
    case_id: str,
    ready: Callable[[c.JourneyStatus], T | None],
    *,
    within: float = 60.0,
    interval: float = 0.1,
) -> T:
    """Poll the journey's status query until `ready` returns something."""
    last: list[c.JourneyStatus] = []

    async def probe() -> T | None:
        try:
            journey = await status(client, case_id)
        except Exception:
            return None
        last[:] = [journey]
        return ready(journey)

    try:
        return await poll(probe, within=within, interval=interval, what="journey status")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last status: {last[0] if last else None}") from None


async def wait_known(
    client: Client, case_id: str, referral_id: str, *, within: float = 60.0
) -> c.ReferralView:
    """Wait until the journey has recorded a referral its activity created.

    The sector lists a referral as soon as it is committed, a moment before
    the journey has recorded the result of the activity that created it; a
    decision sent in that window is refused (UnknownReferral). Staff clients
    that decide within milliseconds of a referral appearing wait for this.
    """
    return await wait_status(
        client, case_id, lambda jn: referral_view(jn, referral_id), within=within, interval=0.1
    )


async def wait_visible(
    client: Client, case_id: str, referral_id: str, wanted: c.ReferralStatus, *, within: float
) -> float:
    """Seconds until the journey's status shows `referral_id` in `wanted`."""
    start = time.perf_counter()
    await wait_status(
        client,
        case_id,
        lambda j: referral_view(j, referral_id, wanted),
        within=within,
        interval=0.005,
    )
    return time.perf_counter() - start


async def poll(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    deadline = time.monotonic() + within
    while True:
        try:
            found = await probe()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            found = None
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {within:.0f}s")
        await asyncio.sleep(interval)
