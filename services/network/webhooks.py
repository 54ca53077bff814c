"""Signed webhooks: a notification posted as JSON to an organisation's
gateway (SMS, messaging) or to an account's own address.

Every post carries

    X-Masar-Timestamp: <unix seconds>
    X-Masar-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">
    X-Masar-Delivery: <delivery id, the same at every attempt>

signed with the organisation's secret (returned once by
SetOrganisationWebhook). A receiver checks it with `verify_signature` below
(the reference verifier the README shows): a wrong signature, a tampered
body or a timestamp older than five minutes is refused; the delivery id lets
it drop a repeated delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "X-Masar-Signature"
TIMESTAMP_HEADER = "X-Masar-Timestamp"
DELIVERY_HEADER = "X-Masar-Delivery"
TOLERANCE_SECONDS = 300
TIMEOUT_SECONDS = 10.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the secret over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """The reference verifier: True only for a body signed with `secret`
    less than `tolerance` seconds ago (header names are case-insensitive)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or not given.startswith("sha256="):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


@dataclass(frozen=True)
class WebhookOutcome:
    sent: bool
    # A code (http_503, webhook_connect, ...) when not sent.
    error: str | None = None
    # A refusal that will not change by retrying (4xx but 408 / 429).
    permanent: bool = False


def encode_body(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def post(
    url: str,
    body: bytes,
    *,
    secret: str,
    delivery_id: str,
    timestamp: int | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> WebhookOutcome:
    """POST the signed body (blocking: run it in a thread)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "masar-network",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(secret, stamp, body),
            DELIVERY_HEADER: delivery_id,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (OSError, ValueError):
        return WebhookOutcome(sent=False, error="webhook_connect")
    if 200 <= status < 300:
        return WebhookOutcome(sent=True)
    permanent = 400 <= status < 500 and status not in (408, 429)
    return WebhookOutcome(sent=False, error=f"http_{status}", permanent=permanent)
