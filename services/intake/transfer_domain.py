"""Transfers of a case between organisations, as intake sees them: the record
and who may see or act on it. No SQL, no protobuf.

A transfer is visible to the organisation that asked it, to the one it is
addressed to now (a redirect moves it, and the previous one loses sight of
it), and to the coordinators of the case's region. The receiving
organisation sees the transfer — ids, codes, times — but not the case until
it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from masar.contract import TransferDeclineReason, TransferReason, TransferStatus
from masar.platform.errors import InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from services.intake.scope import HOLDER_ROLES

_TRANSFER_ID_LENGTH = 32


@dataclass(frozen=True)
class TransferRecord:
    transfer_id: str
    case_id: str
    region: str
    from_organisation_id: str
    to_organisation_id: str
    reason: TransferReason
    status: TransferStatus
    requested_at: datetime
    consent_recorded_at: datetime
    decided_at: datetime | None
    decline_reason: TransferDeclineReason | None
    redirect_count: int
    updated_at: datetime


@dataclass(frozen=True)
class TransferScope:
    """The transfers a caller's lists may show."""

    region: str | None = None
    organisation_id: str | None = None


def require_transfer_id(transfer_id: str, field_path: str = "transfer_id") -> str:
    if not transfer_id:
        raise InvalidArgument(field_path, "is required")
    if (
        len(transfer_id) > _TRANSFER_ID_LENGTH
        or not transfer_id.startswith("trf-")
        or not transfer_id.isascii()
    ):
        raise InvalidArgument(field_path, "is not a transfer id")
    return transfer_id


def transfer_scope(caller: Caller | None) -> TransferScope:
    if caller is None:
        return TransferScope()
    if caller.role is Role.COORDINATOR:
        return TransferScope(region=caller.region)
    if caller.role in HOLDER_ROLES:
        return TransferScope(organisation_id=caller.org)
    raise PermissionDenied("this role sees no transfers")


def may_see(caller: Caller | None, record: TransferRecord) -> bool:
    if caller is None:
        return True
    if caller.role is Role.COORDINATOR:
        return bool(caller.region) and caller.region == record.region
    if caller.role in HOLDER_ROLES:
        return caller.org in (record.from_organisation_id, record.to_organisation_id)
    return False


def require_receiver(caller: Caller | None, record: TransferRecord) -> None:
    """Only the organisation a transfer is addressed to now decides it."""
    if caller is None:
        return
    if caller.role not in HOLDER_ROLES or caller.org != record.to_organisation_id:
        raise PermissionDenied("the transfer is addressed to another organisation")


def require_regional_coordinator(caller: Caller | None, region: str) -> None:
    if caller is None:
        return
    if caller.role is not Role.COORDINATOR or caller.region != region:
        raise PermissionDenied("only a coordinator of the case's region redirects a transfer")
