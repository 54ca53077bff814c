"""Intake: idempotency keys move to the platform's ledger (`idempotency_keys`,
masar.platform.idempotency), the table every sector has; the per-table key
columns of cases, case_changes and escalations go.

Existing keys are carried into the ledger so that no key can make a second
case, change or escalation. An escalation's fingerprint is rebuilt from its
stored fields (a journey retrying it gets its first answer); registrations and
changes do not keep all of their request, so their keys get a fingerprint no
request has: a retry of one of those, sent before this migration and repeated
after it, is refused as a reused key (INVALID_ARGUMENT) instead of answered.

Revision ID: 0003
Revises: 0002

"""

from datetime import UTC, datetime
from collections.abc import Callable
from typing import Any, Sequence, Union

import sqlalchemy as sa
from alembic import op

from masar.platform.db import new_metadata
from masar.platform.idempotency import fingerprint, idempotency_table

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The ledger scopes services.intake.service writes.
REGISTER_SCOPE = "intake.register"
ESCALATION_SCOPE = "intake.escalation"
CHANGE_SCOPE_PREFIX = "intake."
# Matches no request's digest (those are 64 hex digits).
LEGACY_FINGERPRINT = "legacy-0002"

_cases = sa.table("cases", sa.column("case_id", sa.String), sa.column("idempotency_key", sa.String))
_changes = sa.table(
    "case_changes",
    sa.column("change_id", sa.String),
    sa.column("case_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("idempotency_key", sa.String),
    sa.column("recorded_at", sa.DateTime(timezone=True)),
)
_escalations = sa.table(
    "escalations",
    sa.column("escalation_id", sa.String),
    sa.column("idempotency_key", sa.String),
    sa.column("case_id", sa.String),
    sa.column("region", sa.String),
    sa.column("level", sa.Integer),
    sa.column("wait", sa.String),
    sa.column("due_at", sa.DateTime(timezone=True)),
    sa.column("referral_id", sa.String),
    sa.column("recorded_at", sa.DateTime(timezone=True)),
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _carry_keys(bind: Any, ledger: sa.Table) -> None:
    now = datetime.now(UTC)
    entries: dict[tuple[str, str], dict[str, Any]] = {}

    def keep(scope: str, key: str, subject_id: str, print_: str) -> None:
        # The first holder of a (scope, key) keeps it: the old per-case
        # uniqueness of change keys is wider than the ledger's.
        entries.setdefault(
            (scope, key),
            {
                "scope": scope,
                "key": key,
                "fingerprint": print_,
                "subject_id": subject_id,
                "result": None,
                "created_at": now,
            },
        )

    for row in bind.execute(sa.select(_cases.c.case_id, _cases.c.idempotency_key)):
        keep(REGISTER_SCOPE, row.idempotency_key, row.case_id, LEGACY_FINGERPRINT)
    changes = sa.select(_changes).order_by(_changes.c.recorded_at, _changes.c.change_id)
    for row in bind.execute(changes):
        scope = f"{CHANGE_SCOPE_PREFIX}{row.kind}"
        keep(scope, row.idempotency_key, row.change_id, LEGACY_FINGERPRINT)
    escalations = sa.select(_escalations).order_by(_escalations.c.recorded_at)
    for row in bind.execute(escalations):
        # As CaseService.record_escalation fingerprints a notice.
        print_ = fingerprint(
            row.case_id, row.region, row.level, row.wait, _utc(row.due_at), row.referral_id
        )
        keep(ESCALATION_SCOPE, row.idempotency_key, row.escalation_id, print_)
    if entries:
        bind.execute(ledger.insert(), list(entries.values()))


# Tables that reference `cases`.
_CASE_CHILDREN = ("consents", "risk_assessments", "case_changes", "journey_starts", "escalations")


def _rebuild_cases(alter: Callable[[Any], None]) -> None:
    """Alter `cases` (a table rebuild on SQLite). SQLite checks foreign keys
    on the DROP of the old table, inside this migration's transaction where
    they cannot be switched off: the rows that reference a case step aside
    into temporary tables meanwhile, and come back unchanged."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for child in _CASE_CHILDREN:
            op.execute(f"CREATE TEMP TABLE _keep_{child} AS SELECT * FROM {child}")
            op.execute(f"DELETE FROM {child}")
    with op.batch_alter_table("cases") as batch:
        alter(batch)
    if sqlite:
        for child in reversed(_CASE_CHILDREN):
            op.execute(f"INSERT INTO {child} SELECT * FROM _keep_{child}")
            op.execute(f"DROP TABLE _keep_{child}")


def upgrade() -> None:
    bind = op.get_bind()
    ledger = idempotency_table(new_metadata())
    ledger.create(bind)
    _carry_keys(bind, ledger)
    for table, constraint in (
        ("case_changes", "uq_case_changes_case_id"),
        ("escalations", "uq_escalations_idempotency_key"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(constraint, type_="unique")
            batch.drop_column("idempotency_key")

    def drop_key(batch: Any) -> None:
        batch.drop_constraint("uq_cases_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")

    _rebuild_cases(drop_key)


def downgrade() -> None:
    bind = op.get_bind()
    ledger = idempotency_table(new_metadata())

    def add_key(batch: Any) -> None:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))

    _rebuild_cases(add_key)
    for table in ("case_changes", "escalations"):
        with op.batch_alter_table(table) as batch:
            add_key(batch)
    for table, id_column in (
        ("cases", "case_id"),
        ("case_changes", "change_id"),
        ("escalations", "escalation_id"),
    ):
        target = sa.table(table, sa.column(id_column, sa.String), sa.column("idempotency_key"))
        key = (
            sa.select(ledger.c.key)
            .where(ledger.c.subject_id == target.c[id_column])
            .limit(1)
            .scalar_subquery()
        )
        bind.execute(
            sa.update(target).values(idempotency_key=sa.func.coalesce(key, target.c[id_column]))
        )

    def restore_key(batch: Any) -> None:
        batch.alter_column("idempotency_key", nullable=False)
        batch.create_unique_constraint("uq_cases_idempotency_key", ["idempotency_key"])

    _rebuild_cases(restore_key)
    with op.batch_alter_table("case_changes") as batch:
        batch.alter_column("idempotency_key", nullable=False)
        batch.create_unique_constraint(
            "uq_case_changes_case_id", ["case_id", "kind", "idempotency_key"]
        )
    with op.batch_alter_table("escalations") as batch:
        batch.alter_column("idempotency_key", nullable=False)
        batch.create_unique_constraint("uq_escalations_idempotency_key", ["idempotency_key"])
    op.drop_table("idempotency_keys")
