"""Who may see and change which case: intake's scopes, decided in one place.

- Intake officers and organisation supervisors (HOLDER_ROLES) read and
  change only the cases their own organisation holds (the token's `org`
  claim against `cases.holding_organisation_id`).
- A care unit's officer registers cases for another organisation to hold
  and keeps a follow-up view (no personal data) of the cases her unit
  registered (`cases.source_organisation_id`).
- Coordinators see their region's cases; one elsewhere only under an
  emergency grant they opened with a reason (services.intake.grants).
- Anything else is refused, and a refused read is audited by the caller.

A case whose holder was never recorded (NULL: registered before
organisations were) is seen by coordinators only. A token that names no
organisation — the local stack's development shortcut; the network
service's sign-in always names one — holds the cases registered with such a
token (holder ""), and only those.

Access in-process (no caller: the service's own background work, tests
driving the service directly) is the system's and is not restricted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from services.intake import domain as d
from services.intake.models import CaseRow

HOLDER_ROLES = frozenset({Role.INTAKE_OFFICER, Role.SUPERVISOR})
REGISTRAR_ROLES = HOLDER_ROLES | {Role.CARE_UNIT_OFFICER}

HELD_ELSEWHERE = "the case is held by another organisation"


def holds(caller: Caller, case: CaseRow) -> bool:
    """The caller's organisation holds the case."""
    return (
        caller.role in HOLDER_ROLES
        and case.holding_organisation_id is not None
        and case.holding_organisation_id == caller.org
    )


def follows(caller: Caller, case: CaseRow) -> bool:
    """The caller's care unit registered the case (the follow-up view)."""
    return (
        caller.role is Role.CARE_UNIT_OFFICER
        and bool(caller.org)
        and case.source_organisation_id == caller.org
    )


def require_holder(caller: Caller | None, case: CaseRow) -> None:
    """May the caller change the case? Its holder's officers and supervisors."""
    if caller is None or holds(caller, case):
        return
    raise PermissionDenied(HELD_ELSEWHERE)


@dataclass(frozen=True)
class CaseFilter:
    """The part of the case table a caller's lists may show."""

    region: str | None = None
    holding_organisation_id: str | None = None
    source_organisation_id: str | None = None


def case_filter(caller: Caller | None, region: str | None) -> CaseFilter:
    """A list's scope: the caller's own, narrowed by the `region` filter asked."""
    if caller is None:
        return CaseFilter(region=region)
    if caller.role is Role.COORDINATOR:
        if region is not None and region != caller.region:
            raise PermissionDenied("a coordinator lists her own region only")
        return CaseFilter(region=caller.region)
    if caller.role in HOLDER_ROLES:
        return CaseFilter(region=region, holding_organisation_id=caller.org)
    if caller.role is Role.CARE_UNIT_OFFICER and caller.org:
        return CaseFilter(region=region, source_organisation_id=caller.org)
    raise PermissionDenied("this role lists no cases")


def registration_orgs(caller: Caller | None, requested_holder: str) -> tuple[str, str]:
    """(source, holder) of a case the caller registers.

    An officer or supervisor registers for her own organisation (a
    `holding_organisation_id` naming another is refused: that is a
    transfer); a care unit names the organisation that will hold the case,
    never itself."""
    if requested_holder:
        d.require_organisation_id(requested_holder, "holding_organisation_id")
    if caller is None:
        return "", requested_holder
    if caller.role in HOLDER_ROLES:
        if requested_holder and requested_holder != caller.org:
            raise InvalidArgument(
                "holding_organisation_id",
                "an officer registers cases for her own organisation (a transfer hands one on)",
            )
        return caller.org, caller.org
    if caller.role is Role.CARE_UNIT_OFFICER:
        if not caller.org:
            raise PermissionDenied("a care unit officer's token must name her care unit")
        if not requested_holder:
            raise InvalidArgument(
                "holding_organisation_id", "is required when a care unit registers a case"
            )
        if requested_holder == caller.org:
            raise InvalidArgument(
                "holding_organisation_id",
                "must name the organisation that will hold the case, not the care unit",
            )
        return caller.org, requested_holder
    raise PermissionDenied("this role registers no cases")
