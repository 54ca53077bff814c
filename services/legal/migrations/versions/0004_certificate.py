"""Legal aid, revision 0004: what a referral may know of a medical certificate.

`referrals.certificate_issued_at` and `referrals.certificate_itt_days`: a
hospital care unit issued a certificate (the journey tells legal aid through
`legal.note_certificate`); its date and ITT days only. NULL on existing rows."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column(
        "referrals",
        sa.Column("certificate_issued_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("referrals", sa.Column("certificate_itt_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("referrals", "certificate_itt_days")
    op.drop_column("referrals", "certificate_issued_at")
