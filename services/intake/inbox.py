"""The coordinators' inbox (escalations raised by journeys) and transfers
between organisations: their queries, as services.intake.repository's are.
Never commits: the unit of work does. Ids, codes and times only."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import or_, select

from masar.contract import TransferDeclineReason, TransferReason, TransferStatus
from masar.platform.errors import NotFound
from services.intake import domain as d
from services.intake.models import CaseRow, EscalationRow, TransferRow
from services.intake.repository import Page, Repository
from services.intake.transfer_domain import TransferRecord, TransferScope


def new_escalation_id() -> str:
    return f"esc-{secrets.token_hex(8)}"


# --- escalations --------------------------------------------------------------------


def _escalation(row: EscalationRow) -> d.Escalation:
    return d.Escalation(
        escalation_id=row.escalation_id,
        case_id=row.case_id,
        region=row.region,
        level=row.level,
        wait=row.wait,
        due_at=row.due_at,
        referral_id=row.referral_id,
        recorded_at=row.recorded_at,
        transfer_id=row.transfer_id,
        organisation_id=row.organisation_id,
    )


class EscalationRepository(Repository):
    def get(self, escalation_id: str) -> d.Escalation:
        row = self.session.get(EscalationRow, escalation_id)
        assert row is not None
        return _escalation(row)

    def insert(self, escalation: d.Escalation) -> None:
        self.session.add(
            EscalationRow(
                escalation_id=escalation.escalation_id,
                case_id=escalation.case_id,
                region=escalation.region,
                level=escalation.level,
                wait=escalation.wait,
                due_at=escalation.due_at,
                referral_id=escalation.referral_id,
                recorded_at=escalation.recorded_at,
                transfer_id=escalation.transfer_id,
                organisation_id=escalation.organisation_id,
            )
        )
        self.session.flush()

    def list(
        self,
        *,
        region: str | None,
        case_id: str | None,
        min_level: int,
        page: Page,
        organisation_id: str | None = None,
    ) -> tuple[list[d.Escalation], str | None]:
        """With `organisation_id`: only the escalations of the cases that
        organisation holds, and the reminders addressed to it."""
        query = select(EscalationRow)
        if region:
            query = query.where(EscalationRow.region == region)
        if organisation_id is not None:
            held = select(CaseRow.case_id).where(CaseRow.holding_organisation_id == organisation_id)
            query = query.where(
                or_(
                    EscalationRow.organisation_id == organisation_id,
                    EscalationRow.case_id.in_(held),
                )
            )
        if case_id:
            query = query.where(EscalationRow.case_id == case_id)
        if min_level:
            query = query.where(EscalationRow.level >= min_level)
        at = EscalationRow.recorded_at
        after = page.after(at, EscalationRow.escalation_id)
        if after is not None:
            query = query.where(after)
        query = query.order_by(at.desc(), EscalationRow.escalation_id.desc())
        rows = list(self.session.execute(query.limit(page.limit + 1)).scalars())
        items = [_escalation(r) for r in rows[: page.limit]]
        last = items[-1] if items else None
        token = page.next_token(len(rows), last.recorded_at, last.escalation_id) if last else None
        return items, token


# --- transfers ---------------------------------------------------------------------------


def transfer_view(row: TransferRow) -> TransferRecord:
    return TransferRecord(
        transfer_id=row.transfer_id,
        case_id=row.case_id,
        region=row.region,
        from_organisation_id=row.from_organisation_id,
        to_organisation_id=row.to_organisation_id,
        reason=TransferReason(row.reason),
        status=TransferStatus(row.status),
        requested_at=row.requested_at,
        consent_recorded_at=row.consent_recorded_at,
        decided_at=row.decided_at,
        decline_reason=TransferDeclineReason(row.decline_reason) if row.decline_reason else None,
        redirect_count=row.redirect_count,
        updated_at=row.updated_at,
    )


class TransferRepository(Repository):
    def get(self, transfer_id: str, *, lock: bool = False) -> TransferRow | None:
        query = select(TransferRow).where(TransferRow.transfer_id == transfer_id)
        if lock:
            query = query.with_for_update()
        return self.session.execute(query).scalar_one_or_none()

    def get_one(self, transfer_id: str, *, lock: bool = False) -> TransferRow:
        row = self.get(transfer_id, lock=lock)
        if row is None:
            raise NotFound("transfer not found")
        return row

    def pending_of(self, case_id: str) -> TransferRow | None:
        return self.session.execute(
            select(TransferRow).where(
                TransferRow.case_id == case_id,
                TransferRow.status == TransferStatus.PENDING.value,
            )
        ).scalar_one_or_none()

    def insert(
        self,
        *,
        transfer_id: str,
        case: CaseRow,
        from_organisation_id: str,
        to_organisation_id: str,
        reason: TransferReason,
        requested_by: str,
        now: datetime,
    ) -> TransferRow:
        row = TransferRow(
            transfer_id=transfer_id,
            case_id=case.case_id,
            region=case.region,
            from_organisation_id=from_organisation_id,
            to_organisation_id=to_organisation_id,
            reason=reason.value,
            status=TransferStatus.PENDING.value,
            requested_at=now,
            requested_by=requested_by,
            consent_recorded_at=now,
            consent_recorded_by=requested_by,
            decided_at=None,
            decided_by=None,
            decline_reason=None,
            redirect_count=0,
            updated_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def list(
        self,
        *,
        scope: TransferScope,
        case_id: str | None,
        status: TransferStatus | None,
        page: Page,
    ) -> tuple[list[TransferRecord], str | None]:
        query = select(TransferRow)
        if scope.region is not None:
            query = query.where(TransferRow.region == scope.region)
        if scope.organisation_id is not None:
            org = scope.organisation_id
            query = query.where(
                or_(TransferRow.from_organisation_id == org, TransferRow.to_organisation_id == org)
            )
        if case_id:
            query = query.where(TransferRow.case_id == case_id)
        if status is not None:
            query = query.where(TransferRow.status == status.value)
        at = TransferRow.requested_at
        after = page.after(at, TransferRow.transfer_id)
        if after is not None:
            query = query.where(after)
        query = query.order_by(at.desc(), TransferRow.transfer_id.desc())
        rows = list(self.session.execute(query.limit(page.limit + 1)).scalars())
        items = [transfer_view(r) for r in rows[: page.limit]]
        last = items[-1] if items else None
        token = page.next_token(len(rows), last.requested_at, last.transfer_id) if last else None
        return items, token
