"""Signing journey Updates in tests that send them straight to Temporal, as
the rightful sending service would (masar.platform.assertions).

The signers here are this process's own: journey workers built in the same
process trust them (`register_public_key`), as they trust the services that
tests run in-process."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypeVar

from masar.platform.assertions import Actor, AssertionSigner, register_public_key

T = TypeVar("T")

SIGNERS: dict[str, AssertionSigner] = {
    name: AssertionSigner.generate(name) for name in ("intake", "shelter", "legal", "employment")
}
for _signer in SIGNERS.values():
    register_public_key(_signer.public_key)


def signed(
    update_name: str,
    case_id: str,
    event: T,
    actor: Actor,
    *,
    issuer: str = "intake",
    now: datetime | None = None,
) -> T:
    """`event` with an actor assertion signed by `issuer` for `actor`."""
    assertion = SIGNERS[issuer].sign(update_name, case_id, event, actor, now=now)
    result: Any = dataclasses.replace(event, assertion=assertion)  # type: ignore[type-var]
    return result


def as_coordinator(
    update_name: str, case_id: str, event: T, *, region: str, coordinator_id: str = "coord-1"
) -> T:
    """Sent by intake's journey API for a coordinator of `region`."""
    return signed(update_name, case_id, event, Actor(coordinator_id, "coordinator", region=region))
