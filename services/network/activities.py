"""The network's Temporal activities (task queue masar-network): telling
people that a journey needs them.

`network.notify` stores the event's notification and each recipient's inbox
copy once per idempotency key and returns at once (delivery by e-mail and
webhooks happens in the background: a failing channel never fails the
journey); `network.acknowledgements` tells the journey who acknowledged its
notifications and which reached nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract.notify import (
    NETWORK_ACKNOWLEDGEMENTS,
    NETWORK_NOTIFY,
    AcknowledgementsQuery,
    AcknowledgementsResult,
    NotifyEvent,
    NotifyResult,
)
from masar.platform.errors import InvalidArgument
from services.network.notifications import NotificationDesk


class NetworkActivities:
    def __init__(self, desk: NotificationDesk | None = None) -> None:
        self.desk = desk

    @activity.defn(name=NETWORK_NOTIFY)
    async def notify(self, event: NotifyEvent) -> NotifyResult:
        assert self.desk is not None
        try:
            return await self.desk.notify(event)
        except InvalidArgument as exc:
            # A malformed event is a bug in the caller: retrying cannot help.
            raise ApplicationError(
                str(exc), type=contract.ERR_INVALID, non_retryable=True
            ) from None

    @activity.defn(name=NETWORK_ACKNOWLEDGEMENTS)
    async def acknowledgements(self, query: AcknowledgementsQuery) -> AcknowledgementsResult:
        assert self.desk is not None
        return await self.desk.acknowledgements(query)

    def all(self) -> list[Callable[..., Any]]:
        """The activities the service's worker runs (none without a desk)."""
        if self.desk is None:
            return []
        return [self.notify, self.acknowledgements]
