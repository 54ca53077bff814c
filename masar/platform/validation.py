"""Validators shared by every service: each raises InvalidArgument naming the field."""

from __future__ import annotations

import re

from masar import contract
from masar.platform.errors import InvalidArgument
from masar.platform.idempotency import MAX_KEY_LENGTH

_CASE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


_PROVIDER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# An organisation of the network, as a token's `org` claim names it: an opaque
# id, never free text.
_ORGANISATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")


def require_idempotency_key(value: str, field: str = "idempotency_key") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_KEY_LENGTH or not value.isprintable():
        raise InvalidArgument(field, f"must be at most {MAX_KEY_LENGTH} printable characters")
    return value


def require_case_id(value: str, field: str = "case_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _CASE_ID.match(value):
        raise InvalidArgument(field, "is not a case id")
    return value


def check_provider_id(value: str, field: str = "provider_id") -> str:
    if not _PROVIDER_ID.match(value):
        raise InvalidArgument(field, "is not a provider id")
    return value


def require_organisation_id(value: str, field: str = "organisation_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _ORGANISATION_ID.fullmatch(value):
        raise InvalidArgument(field, "is not an organisation id")
    return value


def require_region(value: str, field: str = "region") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if value not in contract.REGIONS:
        raise InvalidArgument(field, "is not a region slug of Morocco (2015 division)")
    return value


def require_text(value: str, field: str, *, max_length: int = 200) -> str:
    if not value or not value.strip():
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    return value.strip()
