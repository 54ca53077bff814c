"""Domain errors, one root, each mapped to one gRPC status in one place.

Messages must never carry personal data: name the field or the id, not the
value a survivor gave.
"""

from __future__ import annotations

import grpc


class MasarError(Exception):
    """Root of every error Masar raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MasarError):
    """The caller sent something malformed; `field` names where."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(MasarError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MasarError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MasarError):
    """The request is well formed but the record is in the wrong state."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MasarError):
    """No capacity left (beds, seats)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(MasarError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(MasarError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(MasarError):
    """A dependency (Temporal, another service) cannot be reached right now."""

    code = grpc.StatusCode.UNAVAILABLE
