"""Domain errors, one root, each mapped to one gRPC status in one place
(`masar.platform.rpc.grpc_status`). Pure: no gRPC import, so domain modules can raise them.

Messages must never carry personal data: name the field or the id, not the
value a survivor gave.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The gRPC status an error maps to, by its grpc.StatusCode name."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class MasarError(Exception):
    """Root of every error Masar raises on purpose."""

    code: Status = Status.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MasarError):
    """The caller sent something malformed; `field` names where."""

    code = Status.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(MasarError):
    code = Status.NOT_FOUND


class AlreadyExists(MasarError):
    code = Status.ALREADY_EXISTS


class FailedPrecondition(MasarError):
    """The request is well formed but the record is in the wrong state."""

    code = Status.FAILED_PRECONDITION


class ResourceExhausted(MasarError):
    """No capacity left (beds, seats)."""

    code = Status.RESOURCE_EXHAUSTED


class PermissionDenied(MasarError):
    code = Status.PERMISSION_DENIED


class Unauthenticated(MasarError):
    code = Status.UNAUTHENTICATED


class Unavailable(MasarError):
    """A dependency (Temporal, another service) cannot be reached right now."""

    code = Status.UNAVAILABLE
