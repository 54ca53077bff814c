"""Intake: whether the survivor needs an interpreter (issue 15, item 7 — Law
27-14 trafficking victims).

`cases.interpreter_needed` is encrypted text like the rest of her profile
("true" / "false"); NULL = not asked, which every case from before reads as.

Revision ID: 0006
Revises: 0005

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("interpreter_needed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("interpreter_needed")
