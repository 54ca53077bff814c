"""Network: the audit anchors table (the other services' signed audit heads,
append-only; masar.platform.audit_anchor).

Revision ID: 0002
Revises: 0001

"""

from typing import Sequence, Union

from alembic import op

from masar.platform.audit_anchor import create_anchor_table, drop_anchor_table

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    create_anchor_table(op)


def downgrade() -> None:
    drop_anchor_table(op)
