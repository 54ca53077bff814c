"""Intake: emergency grants by four eyes (issue 12).

A grant is now a request (`requested_at`, the window it asks for in
`ttl_seconds`) that a second person approves or refuses (`decision`,
`decided_at`, `decided_by`, `decided_role`); `granted_at` and `expires_at`
are set by the approval, NULL before. Indexes for the coordinators' and
supervisors' lists.

Grants from before were opened by their holder alone: they are kept as
approved (that is what they were), with no approver, and any still open is
ended by this revision (`revoked_by` "migration-0005"): from now on access
outside one's region needs a second person's approval, so the holder asks
again.

Revision ID: 0005
Revises: 0004

"""

from datetime import UTC, datetime
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

REVOKED_BY_MIGRATION = "migration-0005"

_grants = sa.table(
    "emergency_grants",
    sa.column("grant_id", sa.String),
    sa.column("granted_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("revoked_at", sa.DateTime(timezone=True)),
    sa.column("revoked_by", sa.String),
    sa.column("requested_at", sa.DateTime(timezone=True)),
    sa.column("ttl_seconds", sa.Integer),
    sa.column("decision", sa.String),
    sa.column("decided_at", sa.DateTime(timezone=True)),
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _carry_over_earlier_grants() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(
            _grants.c.grant_id, _grants.c.granted_at, _grants.c.expires_at, _grants.c.revoked_at
        )
    ).all()
    for grant_id, granted_at, expires_at, revoked_at in rows:
        granted, expires = _utc(granted_at), _utc(expires_at)
        values: dict[str, object] = {
            "requested_at": granted,
            "ttl_seconds": max(1, int((expires - granted).total_seconds())),
            "decision": "approved",
            "decided_at": granted,
        }
        if revoked_at is None and expires > now:
            values.update(revoked_at=now, revoked_by=REVOKED_BY_MIGRATION)
        bind.execute(sa.update(_grants).where(_grants.c.grant_id == grant_id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("emergency_grants") as batch:
        batch.add_column(sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ttl_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("decision", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("decided_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("decided_role", sa.String(length=32), nullable=True))
    _carry_over_earlier_grants()
    with op.batch_alter_table("emergency_grants") as batch:
        batch.alter_column("requested_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("ttl_seconds", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("decision", existing_type=sa.String(length=16), nullable=False)
        batch.alter_column("granted_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    op.create_index("ix_emergency_grants_case_region", "emergency_grants", ["case_region"])
    op.create_index("ix_emergency_grants_requested_at", "emergency_grants", ["requested_at"])


def downgrade() -> None:
    op.drop_index("ix_emergency_grants_requested_at", table_name="emergency_grants")
    op.drop_index("ix_emergency_grants_case_region", table_name="emergency_grants")
    # Requests never approved had no window: they go (they never opened anything).
    op.execute(sa.delete(_grants).where(_grants.c.granted_at.is_(None)))
    with op.batch_alter_table("emergency_grants") as batch:
        batch.alter_column("granted_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        for column in (
            "decided_role",
            "decided_by",
            "decided_at",
            "decision",
            "ttl_seconds",
            "requested_at",
        ):
            batch.drop_column(column)
