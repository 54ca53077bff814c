"""One page-token format for every list RPC: keyset paging on (created_at, id)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from masar.platform.clock import as_utc
from masar.platform.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50


MAX_PAGE_SIZE = 500


def encode_page_token(created_at: datetime, referral_id: str) -> str:
    raw = f"{created_at.isoformat()}|{referral_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        at, referral_id = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        return as_utc(datetime.fromisoformat(at)), referral_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidArgument("page_token", "is malformed") from None
