"""Shelter, revision 0003: providers belong to organisations of the network.

`shelters.organisation_id` (required when a provider is registered from now
on) and `referrals.organisation_id` (copied from the provider: its staff
act on the referral). Existing rows keep NULL: such a provider's referrals
are seen by coordinators and by no staff until an operator assigns the
provider an organisation (masar.referral.migrations.add_organisations says
how)."""

from alembic import op

from masar.referral.migrations import add_organisations, drop_organisations

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    add_organisations(op, "shelters")


def downgrade() -> None:
    drop_organisations(op, "shelters")
