"""Consent that takes effect, on the real stack: the journey refers a survivor
only to the sectors she consented to (and the sector would refuse anyway
without intake's proof); consenting later starts the referral; withdrawing
consent mid-referral purges what the sector received and the sector's audit
log says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from masar import contract as c
from masar.platform import audit
from masar.v1 import intake_pb2, legal_pb2
from services.legal.models import HearingRow, LegalReferralRow
from tests.integration.confidentiality import (
    METADATA,
    Markers,
    accept,
    decrypted_dump,
    files_under,
    plaintext_hits,
    ts,
)
from tests.integration.live import live_stack, referral_in, register_request, seed_region

FES = "fes-meknes"
Status = c.ReferralStatus


async def test_referrals_follow_consent_and_a_withdrawal_purges_the_sector(
    tmp_path: Path,
) -> None:
    markers = Markers()
    async with live_stack(tmp_path) as stack:
        await seed_region(stack, FES)
        # She needs shelter and legal aid, but consents to shelter only.
        reply = await stack.intake.RegisterCase(
            register_request(FES, needs=("shelter", "legal"), consents=("shelter",))
        )
        case_id = reply.case.summary.case_id
        await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, Status.PENDING))
        status = await stack.status(case_id)
        assert all(r.sector != c.Sector.LEGAL for r in status.referrals)
        legal = stack.sectors["legal"].database

        def legal_rows(session: Session) -> list[LegalReferralRow]:
            query = select(LegalReferralRow).where(LegalReferralRow.case_id == case_id)
            return list(session.execute(query).scalars())

        assert await legal.run(legal_rows) == []

        # She consents to legal aid: now intake proves it, and the referral is made.
        await stack.intake.RecordConsent(
            intake_pb2.RecordConsentRequest(
                case_id=case_id, scope=intake_pb2.CONSENT_SCOPE_LEGAL, idempotency_key="c"
            )
        )
        ref = await stack.wait_status(case_id, referral_in(c.Sector.LEGAL, Status.PENDING))
        await stack.legal.DecideReferral(accept(ref.referral_id))
        note = markers.text("hearing_note")
        await stack.legal.RecordHearing(
            legal_pb2.RecordHearingRequest(
                referral_id=ref.referral_id,
                matter=legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
                court=legal_pb2.COURT_LEVEL_FIRST_INSTANCE,
                kind=legal_pb2.HEARING_KIND_INVESTIGATION,
                scheduled_at=ts(datetime.now(UTC) + timedelta(days=2)),
                note=note,
                idempotency_key="h",
            )
        )
        engine = legal.engine
        assert note in decrypted_dump(engine, METADATA["legal"])  # there, encrypted

        # She withdraws it mid-referral.
        await stack.intake.WithdrawConsent(
            intake_pb2.WithdrawConsentRequest(
                case_id=case_id, scope=intake_pb2.CONSENT_SCOPE_LEGAL, idempotency_key="w"
            )
        )
        await stack.wait_status(
            case_id,
            lambda s: any(
                e.event == "case_purged" and e.sector == c.Sector.LEGAL for e in s.timeline
            ),
        )
        status = await stack.status(case_id)
        assert {r.status for r in status.referrals if r.sector == c.Sector.LEGAL} == {
            Status.WITHDRAWN
        }
        # Nothing she gave legal aid is left: needs, languages, matters, notes.
        (row,) = await legal.run(legal_rows)
        assert row.status == Status.WITHDRAWN.value and row.needs_purged_at is not None
        assert row.matters is None and row.languages is None
        hearings = await legal.run(
            lambda s: list(
                s.execute(select(HearingRow).where(HearingRow.referral_id == ref.referral_id))
            )
        )
        assert hearings == []
        assert note not in decrypted_dump(engine, METADATA["legal"])
        assert not plaintext_hits(files_under(tmp_path), [note])
        # ... and the sector's audit log records the purge.
        with Session(engine) as session:
            actions = [(e.action, e.actor) for e in audit.entries_for_case(session, case_id)]
        assert ("case.purged", "service:legal") in actions
        assert ("referral.created", "service:legal") in actions
        assert audit.verify(engine).ok
