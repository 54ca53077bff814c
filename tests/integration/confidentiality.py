"""Support for the confidentiality tests on the live stack: unique marker
strings, scans of raw bytes and of decrypted databases, and a journey walked
through every sector to its closure."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from masar import contract as c
from masar.v1 import common_pb2, employment_pb2, intake_pb2, legal_pb2, shelter_pb2
from services.employment import models as employment_models
from services.health import models as health_models
from services.intake import models as intake_models
from services.legal import models as legal_models
from services.psychosocial import models as psychosocial_models
from services.shelter import models as shelter_models
from tests.integration.live import LiveStack, referral_in
from tests.support_assertions import as_coordinator

METADATA: dict[c.ServiceName, MetaData] = {
    "intake": intake_models.Base.metadata,
    "shelter": shelter_models.Base.metadata,
    "legal": legal_models.Base.metadata,
    "employment": employment_models.Base.metadata,
    "health": health_models.Base.metadata,
    "psychosocial": psychosocial_models.Base.metadata,
}
Status = c.ReferralStatus


class Markers:
    """Unique strings to put in personal-data fields, and find (or not) later."""

    def __init__(self) -> None:
        self.by_field: dict[str, str] = {}

    def text(self, field: str) -> str:
        value = f"Canary{field.title().replace('_', '')}{secrets.token_hex(5)}"
        self.by_field[field] = value
        return value

    def phone(self, field: str = "phone") -> str:
        value = "+2126" + "".join(secrets.choice("0123456789") for _ in range(9))
        self.by_field[field] = value
        return value

    def email(self, field: str = "email") -> str:
        value = f"canary.{secrets.token_hex(5)}@example.org"
        self.by_field[field] = value
        return value

    @property
    def values(self) -> list[str]:
        return list(self.by_field.values())


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def plaintext_hits(paths: Iterable[Path], markers: Iterable[str]) -> dict[str, list[str]]:
    """Marker -> the files whose raw bytes contain it (UTF-8 or UTF-16)."""
    wanted = list(markers)
    hits: dict[str, list[str]] = {}
    for path in paths:
        data = path.read_bytes()
        for marker in wanted:
            if marker.encode() in data or marker.encode("utf-16-le") in data:
                hits.setdefault(marker, []).append(str(path))
    return hits


def text_hits(texts: Mapping[str, str], markers: Iterable[str]) -> dict[str, list[str]]:
    """Marker -> the named texts that contain it."""
    return {
        marker: found
        for marker in markers
        if (found := [name for name, text in texts.items() if marker in text])
    }


def decrypted_dump(engine: Engine, metadata: MetaData) -> str:
    """Every row of every table, read through the models' types (so the
    encrypted columns come back decrypted with the process's key ring)."""
    lines: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def accept(referral_id: str) -> common_pb2.DecideReferralRequest:
    return common_pb2.DecideReferralRequest(
        referral_id=referral_id,
        decision=common_pb2.DECISION_ACCEPT,
        idempotency_key=f"accept-{referral_id}",
    )


async def walk_to_closure(
    stack: LiveStack, case_id: str, *, hearing_note: str, follow_up_note: str
) -> c.JourneyStatus:
    """Shelter, legal aid and employment each accept, start and complete;
    then closure is asked for and a coordinator approves it (stage CLOSED)."""
    now = datetime.now(UTC)
    shelter = await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, Status.PENDING))
    legal = await stack.wait_status(case_id, referral_in(c.Sector.LEGAL, Status.PENDING))
    await stack.shelter.DecideReferral(accept(shelter.referral_id))
    await stack.shelter.CheckIn(
        shelter_pb2.CheckInRequest(referral_id=shelter.referral_id, idempotency_key="in")
    )
    await stack.legal.DecideReferral(accept(legal.referral_id))
    await stack.legal.RecordFirstMeeting(
        legal_pb2.RecordFirstMeetingRequest(
            referral_id=legal.referral_id, met_at=ts(now - timedelta(hours=1)), idempotency_key="m"
        )
    )
    await stack.legal.RecordHearing(
        legal_pb2.RecordHearingRequest(
            referral_id=legal.referral_id,
            matter=legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
            court=legal_pb2.COURT_LEVEL_FIRST_INSTANCE,
            kind=legal_pb2.HEARING_KIND_INVESTIGATION,
            scheduled_at=ts(now + timedelta(days=3)),
            note=hearing_note,
            idempotency_key="h",
        )
    )
    await stack.legal.RecordProtectionOrder(
        legal_pb2.RecordProtectionOrderRequest(
            referral_id=legal.referral_id,
            measure=legal_pb2.PROTECTION_MEASURE_NO_CONTACT_DURING_PROSECUTION,
            status=legal_pb2.PROTECTION_ORDER_STATUS_REQUESTED,
            at=ts(now - timedelta(minutes=30)),
            idempotency_key="po",
        )
    )
    await stack.intake.RecordFollowUp(
        intake_pb2.RecordFollowUpRequest(
            case_id=case_id,
            contacted_at=ts(datetime.now(UTC)),
            channel=intake_pb2.FOLLOW_UP_CHANNEL_PHONE,
            notes=follow_up_note,
            idempotency_key="fu",
        )
    )
    job = await stack.wait_status(case_id, referral_in(c.Sector.EMPLOYMENT, Status.PENDING))
    await stack.employment.DecideReferral(accept(job.referral_id))
    await stack.employment.StartEnrolment(
        employment_pb2.StartEnrolmentRequest(referral_id=job.referral_id, idempotency_key="s")
    )
    await stack.employment.RecordJobPlacement(
        employment_pb2.RecordJobPlacementRequest(
            referral_id=job.referral_id,
            employer_type=employment_pb2.EMPLOYER_TYPE_COOPERATIVE,
            contract_type=employment_pb2.CONTRACT_TYPE_FIXED_TERM,
            idempotency_key="j",
        )
    )
    await stack.legal.CloseMatter(
        legal_pb2.CloseMatterRequest(
            referral_id=legal.referral_id,
            matter=legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
            outcome=legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED,
            closed_at=ts(datetime.now(UTC) - timedelta(seconds=1)),
            idempotency_key="cm",
        )
    )
    await stack.shelter.CheckOut(
        shelter_pb2.CheckOutRequest(
            referral_id=shelter.referral_id,
            exit_reason=shelter_pb2.EXIT_REASON_INDEPENDENT_HOUSING,
            idempotency_key="out",
        )
    )

    def all_completed(status: c.JourneyStatus) -> c.JourneyStatus | None:
        done = {r.sector for r in status.referrals if r.status == Status.COMPLETED}
        walked = {c.Sector.SHELTER, c.Sector.LEGAL, c.Sector.EMPLOYMENT}
        return status if done == walked else None

    await stack.wait_status(case_id, all_completed)
    await stack.intake.RequestClosure(
        intake_pb2.RequestClosureRequest(
            case_id=case_id, reason=intake_pb2.CLOSURE_REASON_NEEDS_MET, idempotency_key="close"
        )
    )
    await stack.wait_status(case_id, lambda s: s.closure_requested)
    handle = stack.client.get_workflow_handle(c.journey_workflow_id(case_id))
    region = (await stack.status(case_id)).region
    await handle.execute_update(
        c.UPDATE_CLOSURE_DECISION,
        as_coordinator(
            c.UPDATE_CLOSURE_DECISION,
            case_id,
            c.ClosureDecision(
                event_id=f"approve-{case_id}",
                approve=True,
                coordinator_id="coord-fes-1",
                reason="needs_met",
            ),
            region=region,
            coordinator_id="coord-fes-1",
        ),
        result_type=c.UpdateResult,
    )
    closed: Any = await stack.wait_status(
        case_id, lambda s: s if s.stage == c.Stage.CLOSED else None
    )
    return closed
