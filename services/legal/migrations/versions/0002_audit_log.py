"""Legal: the append-only, hash-chained audit log (masar.platform.audit): referrals
received, staff decisions and milestones, closures, purges and reads of the
sector's case files.

Revision ID: 0002
Revises: 0001

"""

from typing import Sequence, Union

from alembic import op

from masar.platform.audit import create_audit_tables, drop_audit_tables

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    create_audit_tables(op)


def downgrade() -> None:
    drop_audit_tables(op)
