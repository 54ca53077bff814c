"""Who may act on which referral, beyond the method's roles (which the
AuthInterceptor checks from each servicer method's `requires`): a sector's
staff on the referrals addressed to their own organisation (token `org` ==
the referral's `provider_id`), a coordinator on her own region's, the sector's
service identity (its activities, for the journey) on any."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from masar.contract import Sector
from masar.platform.errors import PermissionDenied
from masar.platform.identity import Caller, Role, service_role
from masar.referral._domain import ReferralFilter

# The staff role of each sector: their token's `org` names their provider.
STAFF_ROLES: dict[Sector, Role] = {
    Sector.SHELTER: Role.SHELTER_STAFF,
    Sector.LEGAL: Role.LEGAL_AID,
    Sector.EMPLOYMENT: Role.EMPLOYMENT_OFFICER,
}


@dataclass(frozen=True)
class SystemActor:
    """The audit actor of a change made outside any RPC (tests, tools)."""

    subject: str = "system"
    role: str = "system"
    org: str = ""


SYSTEM_ACTOR = SystemActor()


def check_referral_scope(caller: Caller, sector: Sector, *, provider_id: str, region: str) -> None:
    """May `caller` act on a referral of `sector` addressed to `provider_id`
    in `region`? Its sector's staff of that provider, a coordinator of that
    region, or the sector's own service identity; PermissionDenied otherwise."""
    if caller.role is STAFF_ROLES[sector]:
        if not caller.org or caller.org != provider_id:
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
    organisation's referrals, a coordinator her own region's."""
    if caller.role is STAFF_ROLES[sector]:
        if filters.provider_id is not None and filters.provider_id != caller.org:
            raise PermissionDenied("staff list only their own organisation's referrals")
        return dataclasses.replace(filters, provider_id=caller.org)
    if caller.role is Role.COORDINATOR:
        if filters.region is not None and filters.region != caller.region:
            raise PermissionDenied("a coordinator lists only her own region's referrals")
        return dataclasses.replace(filters, region=caller.region)
    raise PermissionDenied(f"role {caller.role.value} may not list referrals")
