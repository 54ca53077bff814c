"""Health: initial schema — care units, medical referrals, outbox, idempotency
keys, the audit log; providers and referrals name their organisation (the
tables every sector has come from masar.referral.migrations)."""

import sqlalchemy as sa
from alembic import op

from masar.platform.migrations import create_ledger_and_outbox, drop_ledger_and_outbox
from masar.referral.migrations import (
    add_organisations,
    create_referrals_table,
    downgrade_audit_log,
    drop_organisations,
    drop_referrals_table,
    upgrade_audit_log,
)

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_ledger_and_outbox(op)

    op.create_table(
        "care_units",
        sa.Column("care_unit_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("services", sa.String(length=200), nullable=False),
        sa.Column("languages", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("care_unit_id", name=op.f("pk_care_units")),
    )
    op.create_index(op.f("ix_care_units_region"), "care_units", ["region"], unique=False)

    create_referrals_table(
        op,
        sa.Column("care", sa.Text(), nullable=True),
        sa.Column("languages", sa.Text(), nullable=True),
        sa.Column("incident_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pep_outcome", sa.String(length=16), nullable=True),
        sa.Column("pep_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emergency_contraception_outcome", sa.String(length=16), nullable=True),
        sa.Column("emergency_contraception_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forensic_exam_outcome", sa.String(length=16), nullable=True),
        sa.Column("forensic_exam_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("certificate_issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("certificate_itt_days", sa.Integer(), nullable=True),
        sa.Column("two_weeks_visit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("three_months_visit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("six_months_visit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("care_outcome", sa.String(length=16), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "certificate_itt_days IS NULL OR "
            "(certificate_itt_days >= 0 AND certificate_itt_days <= 365)",
            name=op.f("ck_referrals_itt_days_in_range"),
        ),
    )
    add_organisations(op, "care_units")
    upgrade_audit_log()


def downgrade() -> None:
    downgrade_audit_log()
    drop_organisations(op, "care_units")
    drop_referrals_table(op)
    op.drop_index(op.f("ix_care_units_region"), table_name="care_units")
    op.drop_table("care_units")
    drop_ledger_and_outbox(op)
