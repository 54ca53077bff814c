"""Who may act on which referral, beyond the method's roles (which the
AuthInterceptor checks from each servicer method's `requires`): a sector's
staff on the referrals addressed to their own organisation (token `org` ==
the referral's `organisation_id`, the organisation its provider belongs to:
an organisation running several shelters sees the referrals of all of them),
a coordinator on her own region's, the sector's service identity (its
activities, for the journey) on any. Deny by default: a referral whose
provider names no organisation is seen by no staff (coordinators only)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from masar.contract import Sector
from masar.platform.errors import PermissionDenied
from masar.platform.identity import Caller, Role, service_role
from masar.referral._domain import ReferralFilter

# The staff role of each sector: their token's `org` names their organisation.
STAFF_ROLES: dict[Sector, Role] = {
    Sector.SHELTER: Role.SHELTER_STAFF,
    Sector.LEGAL: Role.LEGAL_AID,
    Sector.EMPLOYMENT: Role.EMPLOYMENT_OFFICER,
    Sector.HEALTH: Role.HEALTH_STAFF,
    Sector.PSYCHOSOCIAL: Role.PSYCHOSOCIAL_STAFF,
}


@dataclass(frozen=True)
class SystemActor:
    """The audit actor of a change made outside any RPC (tests, tools)."""

    subject: str = "system"
    role: str = "system"
    org: str = ""


SYSTEM_ACTOR = SystemActor()


def check_referral_scope(
    caller: Caller, sector: Sector, *, organisation_id: str | None, region: str
) -> None:
    """May `caller` act on a referral of `sector` addressed to a provider of
    `organisation_id` (None: a provider of no organisation) in `region`? Its
    sector's staff of that organisation, a coordinator of that region, or the
    sector's own service identity; PermissionDenied otherwise (the message
    names nothing of the referral)."""
    if caller.role is STAFF_ROLES[sector]:
        if not caller.org or not organisation_id or caller.org != organisation_id:
            raise PermissionDenied("the referral is not addressed to the caller's organisation")
        return
    if caller.role is Role.COORDINATOR:
        if not caller.region or caller.region != region:
            raise PermissionDenied("the referral is outside the caller's region")
        return
    if caller.role is service_role(sector.value):
        return
    raise PermissionDenied(f"role {caller.role.value} may not act on this referral")


def visible_to(caller: Caller, sector: Sector, filters: ReferralFilter) -> ReferralFilter:
    """A listing narrowed to what `caller` may see: staff their own
    organisation's referrals (of any of its providers; a `provider_id` filter
    narrows them further), a coordinator her own region's."""
    if caller.role is STAFF_ROLES[sector]:
        if not caller.org:
            raise PermissionDenied("staff list only their own organisation's referrals")
        if filters.organisation_id is not None and filters.organisation_id != caller.org:
            raise PermissionDenied("staff list only their own organisation's referrals")
        return dataclasses.replace(filters, organisation_id=caller.org)
    if caller.role is Role.COORDINATOR:
        if filters.region is not None and filters.region != caller.region:
            raise PermissionDenied("a coordinator lists only her own region's referrals")
        return dataclasses.replace(filters, region=caller.region)
    raise PermissionDenied(f"role {caller.role.value} may not list referrals")
