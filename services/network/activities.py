"""The network's Temporal activities (task queue masar-network).

None yet: telling staff that a journey needs them (console, e-mail, the
organisation's SMS gateway) will live here, as methods of a class that
receives its collaborators in its constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class NetworkActivities:
    def all(self) -> list[Callable[..., Any]]:
        """The activities the service's worker runs (none: the process then
        starts no worker)."""
        return []
