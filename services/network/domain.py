"""The referral network's rules, pure: organisations, staff accounts, who
manages whom, which roles need a second factor, passwords, and how repeated
sign-in failures slow down further attempts.

No SQLAlchemy, gRPC or Temporal here. Role values are those of
`masar.platform.identity.Role` (the token's role claim), written out again
because this module imports no gRPC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from masar.platform.errors import InvalidArgument, PermissionDenied


class OrganisationKind(StrEnum):
    ASSOCIATION = "association"
    MULTIFUNCTIONAL_CENTRE = "multifunctional_centre"
    SHELTER_OPERATOR = "shelter_operator"
    LEGAL_AID_PROVIDER = "legal_aid_provider"
    TRAINING_CENTRE = "training_centre"
    HOSPITAL_CARE_UNIT = "hospital_care_unit"
    COURT_CARE_UNIT = "court_care_unit"
    POLICE_CARE_UNIT = "police_care_unit"
    GENDARMERIE_CARE_UNIT = "gendarmerie_care_unit"

    @property
    def is_care_unit(self) -> bool:
        return self in CARE_UNITS


CARE_UNITS = frozenset(
    {
        OrganisationKind.HOSPITAL_CARE_UNIT,
        OrganisationKind.COURT_CARE_UNIT,
        OrganisationKind.POLICE_CARE_UNIT,
        OrganisationKind.GENDARMERIE_CARE_UNIT,
    }
)


class OrganisationStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class ServedSector(StrEnum):
    CASE_MANAGEMENT = "case_management"
    SHELTER = "shelter"
    LEGAL = "legal"
    EMPLOYMENT = "employment"
    HEALTH = "health"
    PSYCHOSOCIAL = "psychosocial"


class SpokenLanguage(StrEnum):
    ARABIC = "arabic"
    AMAZIGH = "amazigh"
    FRENCH = "french"
    ENGLISH = "english"
    SPANISH = "spanish"


class PreferredLanguage(StrEnum):
    AR = "ar"
    FR = "fr"
    EN = "en"


class AccountRole(StrEnum):
    """The staff roles; each value is the token role of the same name."""

    INTAKE_OFFICER = "intake_officer"
    SUPERVISOR = "supervisor"
    CARE_UNIT_OFFICER = "care_unit_officer"
    SHELTER_STAFF = "shelter_staff"
    LEGAL_AID = "legal_aid"
    EMPLOYMENT_OFFICER = "employment_officer"
    HEALTH_STAFF = "health_staff"
    PSYCHOSOCIAL_STAFF = "psychosocial_staff"
    COORDINATOR = "coordinator"
    NETWORK_ADMIN = "network_admin"
    OPERATOR = "operator"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DisableReason(StrEnum):
    LEFT_ORGANISATION = "left_organisation"
    EXTENDED_LEAVE = "extended_leave"
    SECURITY_CONCERN = "security_concern"
    OTHER = "other"


# Sign in with a TOTP code as well as a password.
TOTP_ROLES = frozenset({AccountRole.COORDINATOR, AccountRole.SUPERVISOR, AccountRole.NETWORK_ADMIN})
# Accounts only a network administrator manages.
ADMIN_MANAGED_ROLES = frozenset(
    {AccountRole.COORDINATOR, AccountRole.NETWORK_ADMIN, AccountRole.OPERATOR}
)
# A sector's staff work for an organisation that serves that sector.
SECTOR_OF_STAFF: dict[AccountRole, ServedSector] = {
    AccountRole.SHELTER_STAFF: ServedSector.SHELTER,
    AccountRole.LEGAL_AID: ServedSector.LEGAL,
    AccountRole.EMPLOYMENT_OFFICER: ServedSector.EMPLOYMENT,
    AccountRole.HEALTH_STAFF: ServedSector.HEALTH,
    AccountRole.PSYCHOSOCIAL_STAFF: ServedSector.PSYCHOSOCIAL,
}


# --- records --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrganisationSpec:
    name: str
    kind: OrganisationKind
    region: str
    languages: frozenset[SpokenLanguage]
    sectors: frozenset[ServedSector]


@dataclass(frozen=True, kw_only=True)
class Organisation:
    organisation_id: str
    name: str
    kind: OrganisationKind
    region: str
    languages: frozenset[SpokenLanguage]
    sectors: frozenset[ServedSector]
    status: OrganisationStatus
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status is OrganisationStatus.ACTIVE


@dataclass(frozen=True, kw_only=True)
class AccountSpec:
    username: str
    display_name: str
    role: AccountRole
    organisation_id: str
    email: str
    mobile: str
    language: PreferredLanguage


@dataclass(frozen=True, kw_only=True)
class Account:
    account_id: str
    username: str
    display_name: str
    role: AccountRole
    organisation_id: str
    region: str
    email: str
    mobile: str
    language: PreferredLanguage
    status: AccountStatus
    password_change_required: bool
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status is AccountStatus.ACTIVE

    @property
    def totp_required(self) -> bool:
        return self.role in TOTP_ROLES


@dataclass(frozen=True, kw_only=True)
class Manager:
    """Who asks to change the network: the verified caller, as codes."""

    subject: str
    role: str
    org: str
    region: str


# --- who manages what -------------------------------------------------------------------


def check_may_manage_organisations(manager: Manager, region: str) -> None:
    """Create, suspend, reinstate: a network administrator anywhere, a
    coordinator in her own region."""
    if manager.role == AccountRole.NETWORK_ADMIN:
        return
    if manager.role == AccountRole.COORDINATOR and manager.region and manager.region == region:
        return
    raise PermissionDenied("organisations of this region are managed by its coordinators")


def check_may_manage_account(
    manager: Manager, *, role: AccountRole, organisation_id: str, region: str
) -> None:
    """A network administrator manages coordinators, administrators and
    operators; a coordinator the other accounts of her region; a supervisor
    the other accounts of her own organisation."""
    if role in ADMIN_MANAGED_ROLES:
        if manager.role == AccountRole.NETWORK_ADMIN:
            return
        raise PermissionDenied("this account is managed by a network administrator")
    if manager.role == AccountRole.COORDINATOR:
        if manager.region and manager.region == region:
            return
        raise PermissionDenied("a coordinator manages the accounts of her own region only")
    if manager.role == AccountRole.SUPERVISOR:
        if manager.org and manager.org == organisation_id:
            return
        raise PermissionDenied("a supervisor manages her own organisation's accounts only")
    raise PermissionDenied(f"role {manager.role} does not manage accounts")


def check_may_reset_credentials(manager: Manager, *, role: AccountRole, region: str) -> None:
    """Password and TOTP resets: a coordinator of the account's region (a
    network administrator for the accounts she manages)."""
    if role in ADMIN_MANAGED_ROLES:
        if manager.role == AccountRole.NETWORK_ADMIN:
            return
        raise PermissionDenied("this account's credentials are reset by a network administrator")
    if manager.role == AccountRole.COORDINATOR and manager.region and manager.region == region:
        return
    raise PermissionDenied("credentials are reset by a coordinator of the account's region")


def check_account_fits(role: AccountRole, organisation: Organisation) -> None:
    """A role must make sense in its organisation (field `role`)."""
    if not organisation.active:
        raise InvalidArgument("organisation_id", "names a suspended organisation")
    if role is AccountRole.CARE_UNIT_OFFICER and not organisation.kind.is_care_unit:
        raise InvalidArgument("role", "a care-unit officer belongs to a care unit")
    sector = SECTOR_OF_STAFF.get(role)
    if sector is not None and sector not in organisation.sectors:
        raise InvalidArgument("role", f"the organisation does not serve the {sector} sector")


# --- input ---------------------------------------------------------------------------------

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_MOBILE = re.compile(r"\+[1-9][0-9]{7,14}")
_ORGANISATION_ID = re.compile(r"org-[0-9a-f]{12}")
_ACCOUNT_ID = re.compile(r"acc-[0-9a-f]{12}")

MIN_PASSWORD = 12
MAX_PASSWORD = 256  # argon2 hashes any length; a bound keeps requests cheap


def normalise_login(value: str) -> str:
    """Username or e-mail, as stored and compared."""
    return value.strip().lower()


def check_username(value: str, field: str = "username") -> str:
    username = normalise_login(value)
    if not username:
        raise InvalidArgument(field, "is required")
    if not _USERNAME.fullmatch(username) or "@" in username:
        raise InvalidArgument(field, "must be 3 to 64 lowercase letters, digits, '.', '_' or '-'")
    return username


def check_email(value: str, field: str = "email") -> str:
    email = normalise_login(value)
    if not email:
        raise InvalidArgument(field, "is required")
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise InvalidArgument(field, "is not an e-mail address")
    return email


def check_mobile(value: str, field: str = "mobile") -> str:
    mobile = value.strip().replace(" ", "")
    if mobile and not _MOBILE.fullmatch(mobile):
        raise InvalidArgument(field, "must be an international number, e.g. +212612345678")
    return mobile


def check_organisation_id(value: str, field: str = "organisation_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _ORGANISATION_ID.fullmatch(value):
        raise InvalidArgument(field, "is not an organisation id")
    return value


def check_account_id(value: str, field: str = "account_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _ACCOUNT_ID.fullmatch(value):
        raise InvalidArgument(field, "is not an account id")
    return value


def check_new_password(password: str, *, logins: tuple[str, ...], field: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(field, f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidArgument(field, f"must be at most {MAX_PASSWORD} characters")
    if not password.isprintable():
        raise InvalidArgument(field, "must be printable characters")
    lowered = password.lower()
    if any(login and login in lowered for login in logins):
        raise InvalidArgument(field, "must not contain the username or e-mail address")
    return password


def check_given_password(password: str, field: str) -> str:
    """A password offered to sign in: only its size is checked."""
    if not password:
        raise InvalidArgument(field, "is required")
    if len(password) > MAX_PASSWORD:
        raise InvalidArgument(field, f"must be at most {MAX_PASSWORD} characters")
    return password


def check_totp_code(code: str, field: str = "totp_code") -> str:
    code = code.strip()
    if code and not (code.isdigit() and len(code) == 6):
        raise InvalidArgument(field, "must be six digits")
    return code


# --- slowing down repeated failures ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ThrottlePolicy:
    """Repeated sign-in failures slow further attempts down: after `free`
    failures each attempt waits `base` * 2^(failures - free), at most `cap`.
    Never a lock: a correct password always gets in once its wait is over.

    Per source address, attempts are spaced by that wait even when sent at
    once, and refused (RESOURCE_EXHAUSTED) when the queue is longer than the
    cap. Per account, every attempt waits (at most `account_cap`), from any
    address, but none is refused, so no one can lock a person out. Failures
    are forgotten `forget_after` the last one."""

    free: int = 3
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(seconds=30)
    account_cap: timedelta = timedelta(seconds=5)
    forget_after: timedelta = timedelta(minutes=15)

    def delay(self, failures: int, *, cap: timedelta | None = None) -> timedelta:
        over = failures - self.free
        if over < 0:
            return timedelta(0)
        limit = self.cap if cap is None else cap
        # The shift is bounded, so no failure count can overflow the delay.
        return min(self.base * (1 << min(over, 32)), limit)


@dataclass(frozen=True, kw_only=True)
class FailureCount:
    """What the throttle remembers of one key (an address or an account)."""

    failures: int = 0
    last_failure_at: datetime | None = None
    next_attempt_at: datetime | None = None

    def current(self, policy: ThrottlePolicy, now: datetime) -> FailureCount:
        """Forgotten once `forget_after` has passed since the last failure."""
        if self.last_failure_at is None or now - self.last_failure_at >= policy.forget_after:
            return FailureCount()
        return self


@dataclass(frozen=True, kw_only=True)
class AddressSlot:
    """When an attempt from an address may run, and the slot it leaves for the next."""

    wait: timedelta
    next_attempt_at: datetime
    refused: bool


def claim_address_slot(count: FailureCount, policy: ThrottlePolicy, now: datetime) -> AddressSlot:
    """Each attempt waits the delay its address's failures call for, and no
    sooner than the slot the attempt before it left (so attempts sent at once
    queue up); past the cap the attempt is refused and takes no slot."""
    delay = policy.delay(count.failures)
    start = max(now + delay, count.next_attempt_at or now)
    wait = start - now
    if wait > policy.cap:
        return AddressSlot(wait=wait, next_attempt_at=count.next_attempt_at or now, refused=True)
    return AddressSlot(wait=wait, next_attempt_at=start + delay, refused=False)


def account_wait(count: FailureCount, policy: ThrottlePolicy) -> timedelta:
    return policy.delay(count.failures, cap=policy.account_cap)
