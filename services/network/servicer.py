"""masar.v1.NetworkService: protobuf <-> domain, validation, nothing else.

Who may call what (every method declares it; anything else is refused):
organisations are created, suspended and reinstated by network
administrators and coordinators (the service checks the region) and read by
anyone signed in; accounts are managed by administrators, coordinators and
supervisors (the service checks which accounts each manages), read by those
and by their holder; credentials are reset by administrators and
coordinators. SignIn, RefreshToken and ChangePassword take no bearer token:
they authenticate the person themselves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from masar.platform.access import requires
from masar.platform.audit_anchor import ANCHORED_SERVICES, HASH_PATTERN, KEY_ID_PATTERN, Anchor
from masar.platform.clock import as_utc
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.idempotency import request_fingerprint
from masar.platform.identity import (
    ANY_AUTHENTICATED,
    NO_TOKEN,
    Role,
    current_caller,
    service_role,
)
from masar.platform.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from masar.platform.validation import require_idempotency_key, require_region, require_text
from masar.v1 import network_pb2, network_pb2_grpc
from services.network.anchors import AnchorRegistry
from services.network.domain import (
    Account,
    AccountRole,
    AccountSpec,
    AccountStatus,
    DisableReason,
    Manager,
    Organisation,
    OrganisationKind,
    OrganisationSpec,
    OrganisationStatus,
    PreferredLanguage,
    ServedSector,
    SpokenLanguage,
    check_account_id,
    check_email,
    check_given_password,
    check_mobile,
    check_new_password,
    check_organisation_id,
    check_totp_code,
    check_username,
    normalise_login,
)
from services.network.models import AccountRow
from services.network.notifications import NotificationDesk
from services.network.notify_servicer import NotificationEndpoints
from services.network.repository import AccountFilter, Page
from services.network.service import NetworkDirectory
from services.network.signin import SignedIn, SignInDesk

if TYPE_CHECKING:
    # The stubs' name for a generated enum's class (its metaclass).
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

SERVICE_NAME = "masar.v1.NetworkService"
FORWARDED_FOR = "x-forwarded-for"
# Peers whose `x-forwarded-for` names the person's address (the console).
LOOPBACK = frozenset({"127.0.0.1", "::1"})

ORGANISATION_MANAGERS = (Role.NETWORK_ADMIN, Role.COORDINATOR)
ACCOUNT_MANAGERS = (Role.NETWORK_ADMIN, Role.COORDINATOR, Role.SUPERVISOR)
CREDENTIAL_RESETTERS = (Role.NETWORK_ADMIN, Role.COORDINATOR)
# Every staff role: a person may read her own account.
STAFF = tuple(Role(r.value) for r in AccountRole)
MAX_LOGIN = 254
DEFAULT_CONSOLE_URL = "http://127.0.0.1:8080"

E = TypeVar("E", bound=StrEnum)
V = TypeVar("V", bound=int)


# --- conversions ----------------------------------------------------------------------


def enum_from_pb(
    pb_enum: _EnumTypeWrapper[Any], prefix: str, domain: type[E], value: int, field: str
) -> E:
    """A protobuf enum value as the domain member of the same name."""
    if value == 0:
        raise InvalidArgument(field, "is required")
    try:
        name = pb_enum.Name(value)
    except ValueError:
        raise InvalidArgument(field, "is not a known value") from None
    return domain[name.removeprefix(prefix)]


def optional_enum(
    pb_enum: _EnumTypeWrapper[Any], prefix: str, domain: type[E], value: int, field: str
) -> E | None:
    return None if value == 0 else enum_from_pb(pb_enum, prefix, domain, value, field)


def enum_to_pb(pb_enum: _EnumTypeWrapper[V], prefix: str, member: StrEnum) -> V:
    return pb_enum.Value(prefix + member.name)


def enum_set(
    pb_enum: _EnumTypeWrapper[Any], prefix: str, domain: type[E], values: Iterable[int], field: str
) -> frozenset[E]:
    members = frozenset(enum_from_pb(pb_enum, prefix, domain, v, field) for v in values)
    if not members:
        raise InvalidArgument(field, "needs at least one value")
    return members


def timestamp_pb(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(as_utc(value))
    return ts


def organisation_to_pb(organisation: Organisation) -> network_pb2.Organisation:
    pb = network_pb2
    return pb.Organisation(
        organisation_id=organisation.organisation_id,
        name=organisation.name,
        kind=enum_to_pb(pb.OrganisationKind, "ORGANISATION_KIND_", organisation.kind),
        region=organisation.region,
        languages=sorted(
            enum_to_pb(pb.SpokenLanguage, "SPOKEN_LANGUAGE_", m) for m in organisation.languages
        ),
        sectors=sorted(
            enum_to_pb(pb.ServedSector, "SERVED_SECTOR_", m) for m in organisation.sectors
        ),
        status=enum_to_pb(pb.OrganisationStatus, "ORGANISATION_STATUS_", organisation.status),
        created_at=timestamp_pb(organisation.created_at),
        updated_at=timestamp_pb(organisation.updated_at),
    )


def account_to_pb(account: Account) -> network_pb2.Account:
    pb = network_pb2
    return pb.Account(
        account_id=account.account_id,
        username=account.username,
        display_name=account.display_name,
        role=enum_to_pb(pb.AccountRole, "ACCOUNT_ROLE_", account.role),
        organisation_id=account.organisation_id,
        region=account.region,
        email=account.email,
        mobile=account.mobile,
        language=enum_to_pb(pb.PreferredLanguage, "PREFERRED_LANGUAGE_", account.language),
        status=enum_to_pb(pb.AccountStatus, "ACCOUNT_STATUS_", account.status),
        totp_required=account.totp_required,
        password_change_required=account.password_change_required,
        created_at=timestamp_pb(account.created_at),
        updated_at=timestamp_pb(account.updated_at),
    )


def signed_in_to_pb(signed_in: SignedIn) -> network_pb2.SignedIn:
    pb = network_pb2
    account = signed_in.account
    return pb.SignedIn(
        access_token=signed_in.access_token,
        access_token_expires_at=timestamp_pb(signed_in.access_expires_at),
        refresh_token=signed_in.refresh_token,
        refresh_token_expires_at=timestamp_pb(signed_in.refresh_expires_at),
        account_id=account.account_id,
        role=enum_to_pb(pb.AccountRole, "ACCOUNT_ROLE_", account.role),
        organisation_id=account.organisation_id,
        region=account.region,
        language=enum_to_pb(pb.PreferredLanguage, "PREFERRED_LANGUAGE_", account.language),
    )


def page_of(page_size: int, page_token: str) -> Page:
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return Page(size=page_size or DEFAULT_PAGE_SIZE, token=page_token)


def require_login(value: str, field: str = "login") -> str:
    login = normalise_login(value)
    if not login:
        raise InvalidArgument(field, "is required")
    if len(login) > MAX_LOGIN or not login.isprintable():
        raise InvalidArgument(field, "is not a username or an e-mail address")
    return login


def current_manager() -> Manager:
    caller = current_caller()
    return Manager(
        subject=caller.subject, role=caller.role.value, org=caller.org, region=caller.region
    )


def source_address(context: grpc.aio.ServicerContext, trusted_proxies: frozenset[str]) -> str:
    """The person's address: the peer's, or — when the peer is a trusted
    proxy (the console) — the last address its `x-forwarded-for` names."""
    peer = _peer_ip(context.peer() or "")
    if peer in trusted_proxies:
        for key, value in context.invocation_metadata() or ():
            if key.lower() == FORWARDED_FOR:
                text = value.decode() if isinstance(value, bytes) else str(value)
                forwarded = text.split(",")[-1].strip()
                try:
                    return str(ipaddress.ip_address(forwarded))
                except ValueError:
                    break
    return peer


def _peer_ip(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' -> '127.0.0.1', 'ipv6:[::1]:5000' -> '::1'."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.strip("[]").split("%")[0]
    return peer or "unknown"


# --- servicer -----------------------------------------------------------------------------


class NetworkServicer(NotificationEndpoints, network_pb2_grpc.NetworkServiceServicer):
    def __init__(
        self,
        *,
        directory: NetworkDirectory,
        desk: SignInDesk,
        trusted_proxies: frozenset[str] = LOOPBACK,
        anchors: AnchorRegistry | None = None,
        notifications: NotificationDesk | None = None,
        console_url: str = DEFAULT_CONSOLE_URL,
    ) -> None:
        self.directory = directory
        self.desk = desk
        self.trusted_proxies = trusted_proxies
        self.anchors = anchors or AnchorRegistry(directory.database)
        # Notifications (services/network/notify_servicer.py).
        self.notifications = notifications or NotificationDesk(directory.database)
        self.console_url = console_url

    # -- organisations --

    @requires(*ORGANISATION_MANAGERS)
    async def CreateOrganisation(
        self, request: network_pb2.CreateOrganisationRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.CreateOrganisationResponse:
        pb = network_pb2
        spec = OrganisationSpec(
            name=require_text(request.name, "name"),
            kind=enum_from_pb(
                pb.OrganisationKind, "ORGANISATION_KIND_", OrganisationKind, request.kind, "kind"
            ),
            region=require_region(request.region),
            languages=enum_set(
                pb.SpokenLanguage,
                "SPOKEN_LANGUAGE_",
                SpokenLanguage,
                request.languages,
                "languages",
            ),
            sectors=enum_set(
                pb.ServedSector, "SERVED_SECTOR_", ServedSector, request.sectors, "sectors"
            ),
        )
        key = require_idempotency_key(request.idempotency_key)
        organisation = await self.directory.create_organisation(
            current_manager(), spec, key=key, fingerprint=request_fingerprint(request)
        )
        return pb.CreateOrganisationResponse(organisation=organisation_to_pb(organisation))

    @requires(ANY_AUTHENTICATED)
    async def GetOrganisation(
        self, request: network_pb2.GetOrganisationRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.GetOrganisationResponse:
        organisation_id = check_organisation_id(request.organisation_id)
        organisation = await self.directory.get_organisation(organisation_id)
        return network_pb2.GetOrganisationResponse(organisation=organisation_to_pb(organisation))

    @requires(ANY_AUTHENTICATED)
    async def ListOrganisations(
        self, request: network_pb2.ListOrganisationsRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ListOrganisationsResponse:
        pb = network_pb2
        organisations, token = await self.directory.list_organisations(
            region=require_region(request.region) if request.region else None,
            kind=optional_enum(
                pb.OrganisationKind, "ORGANISATION_KIND_", OrganisationKind, request.kind, "kind"
            ),
            status=optional_enum(
                pb.OrganisationStatus,
                "ORGANISATION_STATUS_",
                OrganisationStatus,
                request.status,
                "status",
            ),
            page=page_of(request.page_size, request.page_token),
        )
        return pb.ListOrganisationsResponse(
            organisations=[organisation_to_pb(o) for o in organisations], next_page_token=token
        )

    @requires(*ORGANISATION_MANAGERS)
    async def SuspendOrganisation(
        self, request: network_pb2.SuspendOrganisationRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.SuspendOrganisationResponse:
        organisation = await self.directory.set_organisation_status(
            current_manager(),
            check_organisation_id(request.organisation_id),
            OrganisationStatus.SUSPENDED,
        )
        return network_pb2.SuspendOrganisationResponse(
            organisation=organisation_to_pb(organisation)
        )

    @requires(*ORGANISATION_MANAGERS)
    async def ReinstateOrganisation(
        self, request: network_pb2.ReinstateOrganisationRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ReinstateOrganisationResponse:
        organisation = await self.directory.set_organisation_status(
            current_manager(),
            check_organisation_id(request.organisation_id),
            OrganisationStatus.ACTIVE,
        )
        return network_pb2.ReinstateOrganisationResponse(
            organisation=organisation_to_pb(organisation)
        )

    # -- accounts --

    @requires(*ACCOUNT_MANAGERS)
    async def CreateAccount(
        self, request: network_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.CreateAccountResponse:
        pb = network_pb2
        spec = AccountSpec(
            username=check_username(request.username),
            display_name=require_text(request.display_name, "display_name"),
            role=enum_from_pb(pb.AccountRole, "ACCOUNT_ROLE_", AccountRole, request.role, "role"),
            organisation_id=check_organisation_id(request.organisation_id),
            email=check_email(request.email),
            mobile=check_mobile(request.mobile),
            language=enum_from_pb(
                pb.PreferredLanguage,
                "PREFERRED_LANGUAGE_",
                PreferredLanguage,
                request.language,
                "language",
            ),
        )
        key = require_idempotency_key(request.idempotency_key)
        issued = await self.directory.create_account(
            current_manager(), spec, key=key, fingerprint=request_fingerprint(request)
        )
        return pb.CreateAccountResponse(
            account=account_to_pb(issued.account),
            one_time_password=issued.one_time_password,
            totp_uri=issued.totp_uri,
        )

    @requires(*STAFF)
    async def GetAccount(
        self, request: network_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.GetAccountResponse:
        account = await self.directory.get_account(
            current_manager(), check_account_id(request.account_id)
        )
        return network_pb2.GetAccountResponse(account=account_to_pb(account))

    @requires(*ACCOUNT_MANAGERS)
    async def ListAccounts(
        self, request: network_pb2.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ListAccountsResponse:
        pb = network_pb2
        filters = AccountFilter(
            organisation_id=(
                check_organisation_id(request.organisation_id) if request.organisation_id else None
            ),
            region=require_region(request.region) if request.region else None,
            role=optional_enum(pb.AccountRole, "ACCOUNT_ROLE_", AccountRole, request.role, "role"),
            status=optional_enum(
                pb.AccountStatus, "ACCOUNT_STATUS_", AccountStatus, request.status, "status"
            ),
        )
        accounts, token = await self.directory.list_accounts(
            current_manager(), filters, page_of(request.page_size, request.page_token)
        )
        return pb.ListAccountsResponse(
            accounts=[account_to_pb(a) for a in accounts], next_page_token=token
        )

    @requires(*ACCOUNT_MANAGERS)
    async def DisableAccount(
        self, request: network_pb2.DisableAccountRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.DisableAccountResponse:
        account_id = check_account_id(request.account_id)
        reason = enum_from_pb(
            network_pb2.DisableReason, "DISABLE_REASON_", DisableReason, request.reason, "reason"
        )
        account = await self.directory.set_account_status(
            current_manager(), account_id, AccountStatus.DISABLED, reason
        )
        return network_pb2.DisableAccountResponse(account=account_to_pb(account))

    @requires(*ACCOUNT_MANAGERS)
    async def EnableAccount(
        self, request: network_pb2.EnableAccountRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.EnableAccountResponse:
        account = await self.directory.set_account_status(
            current_manager(), check_account_id(request.account_id), AccountStatus.ACTIVE
        )
        return network_pb2.EnableAccountResponse(account=account_to_pb(account))

    @requires(*CREDENTIAL_RESETTERS)
    async def ResetPassword(
        self, request: network_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ResetPasswordResponse:
        issued = await self.directory.reset_password(
            current_manager(), check_account_id(request.account_id)
        )
        return network_pb2.ResetPasswordResponse(
            account=account_to_pb(issued.account), one_time_password=issued.one_time_password
        )

    @requires(*CREDENTIAL_RESETTERS)
    async def ResetTotp(
        self, request: network_pb2.ResetTotpRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ResetTotpResponse:
        issued = await self.directory.reset_totp(
            current_manager(), check_account_id(request.account_id)
        )
        return network_pb2.ResetTotpResponse(
            account=account_to_pb(issued.account), totp_uri=issued.totp_uri
        )

    # -- signing in --

    @requires(NO_TOKEN)
    async def ChangePassword(
        self, request: network_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ChangePasswordResponse:
        login = require_login(request.login)
        current = check_given_password(request.current_password, "current_password")
        new = check_new_password(request.new_password, logins=(login,), field="new_password")
        if new == current:
            raise InvalidArgument("new_password", "must differ from the current password")
        totp = check_totp_code(request.totp_code)

        def check_new(row: AccountRow) -> None:
            check_new_password(new, logins=(row.username, row.email), field="new_password")

        signed_in = await self.desk.change_password(
            login,
            current,
            new,
            totp,
            source=source_address(context, self.trusted_proxies),
            check_new=check_new,
        )
        return network_pb2.ChangePasswordResponse(signed_in=signed_in_to_pb(signed_in))

    @requires(NO_TOKEN)
    async def SignIn(
        self, request: network_pb2.SignInRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.SignInResponse:
        login = require_login(request.login)
        password = check_given_password(request.password, "password")
        totp = check_totp_code(request.totp_code)
        signed_in = await self.desk.sign_in(
            login, password, totp, source=source_address(context, self.trusted_proxies)
        )
        return network_pb2.SignInResponse(signed_in=signed_in_to_pb(signed_in))

    @requires(NO_TOKEN)
    async def RefreshToken(
        self, request: network_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.RefreshTokenResponse:
        if not request.refresh_token:
            raise InvalidArgument("refresh_token", "is required")
        signed_in = await self.desk.refresh(request.refresh_token)
        return network_pb2.RefreshTokenResponse(signed_in=signed_in_to_pb(signed_in))

    # -- audit anchors --

    @requires(*(service_role(name) for name in ANCHORED_SERVICES))
    async def AnchorAuditHead(
        self, request: network_pb2.AnchorAuditHeadRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.AnchorAuditHeadResponse:
        proposed = anchor_from_pb(request)
        caller = current_caller()
        if caller.role.value != f"service:{proposed.service}":
            raise PermissionDenied("a service anchors only its own audit log")
        anchored = await self.anchors.anchor(proposed, anchored_by=caller.subject)
        anchor = anchored.anchor
        reply = network_pb2.AuditAnchor(
            service=anchor.service,
            sequence=anchor.sequence,
            head_hash=anchor.head_hash,
            key_id=anchor.key_id,
            signature=anchor.signature,
        )
        if anchor.anchored_at is not None:
            reply.anchored_at.FromDatetime(anchor.anchored_at)
        return network_pb2.AnchorAuditHeadResponse(anchor=reply, already_anchored=anchored.already)


def anchor_from_pb(request: network_pb2.AnchorAuditHeadRequest) -> Anchor:
    if request.service not in ANCHORED_SERVICES:
        raise InvalidArgument("service", "is not a service whose audit log is anchored")
    if request.sequence < 1:
        raise InvalidArgument("sequence", "must be at least 1")
    if not HASH_PATTERN.fullmatch(request.head_hash):
        raise InvalidArgument("head_hash", "must be 64 lowercase hex digits")
    if not KEY_ID_PATTERN.fullmatch(request.key_id):
        raise InvalidArgument("key_id", "must be 16 lowercase hex digits")
    if len(request.signature) != 64:
        raise InvalidArgument("signature", "must be a 64-byte Ed25519 signature")
    return Anchor(
        service=request.service,
        sequence=request.sequence,
        head_hash=request.head_hash,
        key_id=request.key_id,
        signature=bytes(request.signature),
    )
