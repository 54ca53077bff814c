"""Intake: scoped access and case transfers (issue 11).

- `cases` records the organisation that registered each case
  (`source_organisation_id`) and the one that holds it now
  (`holding_organisation_id`). Cases from before: no source (it was never
  recorded); their holder is the organisation named in the token that
  registered them, read from the audit log's `case.register` entry, and NULL
  when that token named none — such a case is then seen by coordinators only.
- `escalations` gains the transfer a rung is about and the organisation a
  reminder is addressed to.
- `transfers`: requests that another organisation take over a case.

Revision ID: 0004
Revises: 0003

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_cases = sa.table(
    "cases",
    sa.column("case_id", sa.String),
    sa.column("holding_organisation_id", sa.String),
)
_audit = sa.table(
    "audit_log",
    sa.column("seq", sa.Integer),
    sa.column("org", sa.String),
    sa.column("action", sa.String),
    sa.column("case_id", sa.String),
)


def _holders_from_the_audit_log() -> None:
    """Each case's holder: the organisation of the token that registered it."""
    bind = op.get_bind()
    registrars: dict[str, str] = {}
    entries = (
        sa.select(_audit.c.case_id, _audit.c.org)
        .where(_audit.c.action == "case.register")
        .order_by(_audit.c.seq)
    )
    for case_id, org in bind.execute(entries):
        if case_id is not None:
            registrars.setdefault(case_id, org or "")
    for case_id, org in registrars.items():
        if org:
            bind.execute(
                sa.update(_cases)
                .where(_cases.c.case_id == case_id)
                .values(holding_organisation_id=org)
            )


def upgrade() -> None:
    op.add_column("cases", sa.Column("source_organisation_id", sa.String(128), nullable=True))
    op.add_column("cases", sa.Column("holding_organisation_id", sa.String(128), nullable=True))
    op.create_index(op.f("ix_cases_holding_organisation_id"), "cases", ["holding_organisation_id"])
    _holders_from_the_audit_log()

    op.add_column("escalations", sa.Column("transfer_id", sa.String(32), nullable=True))
    op.add_column("escalations", sa.Column("organisation_id", sa.String(128), nullable=True))
    op.create_index(op.f("ix_escalations_organisation_id"), "escalations", ["organisation_id"])

    op.create_table(
        "transfers",
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("from_organisation_id", sa.String(length=128), nullable=False),
        sa.Column("to_organisation_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("consent_recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consent_recorded_by", sa.String(length=128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decline_reason", sa.String(length=32), nullable=True),
        sa.Column("redirect_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.case_id"], name=op.f("fk_transfers_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_transfers")),
    )
    for column in (
        "case_id",
        "region",
        "from_organisation_id",
        "to_organisation_id",
        "status",
        "requested_at",
    ):
        op.create_index(op.f(f"ix_transfers_{column}"), "transfers", [column])


# Tables that reference `cases` (after `transfers` is dropped).
_CASE_CHILDREN = ("consents", "risk_assessments", "case_changes", "journey_starts", "escalations")


def downgrade() -> None:
    op.drop_table("transfers")
    op.drop_index(op.f("ix_escalations_organisation_id"), table_name="escalations")
    with op.batch_alter_table("escalations") as batch:
        batch.drop_column("organisation_id")
        batch.drop_column("transfer_id")
    op.drop_index(op.f("ix_cases_holding_organisation_id"), table_name="cases")
    # As in 0003: on SQLite the rows referencing a case step aside while
    # `cases` is rebuilt (foreign keys are checked on the old table's DROP).
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for child in _CASE_CHILDREN:
            op.execute(f"CREATE TEMP TABLE _keep_{child} AS SELECT * FROM {child}")
            op.execute(f"DELETE FROM {child}")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("holding_organisation_id")
        batch.drop_column("source_organisation_id")
    if sqlite:
        for child in reversed(_CASE_CHILDREN):
            op.execute(f"INSERT INTO {child} SELECT * FROM _keep_{child}")
            op.execute(f"DROP TABLE _keep_{child}")
