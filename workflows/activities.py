"""The journey worker's own activity: handing its SLA policy to journeys.

The worker loads and checks the policy file once, at start; every journey run
asks for it through this local activity, so the policy is recorded in the
journey's history and workflow code never reads a file.

The same result carries the issuers' public assertion keys
(`SlaPolicy.issuer_keys`, see workflows.authentication), read afresh at each
call: a key published after the worker started reaches the next run, and the
keys a run verified with are in its history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from temporalio import activity

from masar.contract import IssuerKey
from workflows.policy import LOAD_POLICY_ACTIVITY, SlaPolicy

IssuerKeySource = Callable[[], list[IssuerKey]]


class PolicyActivities:
    def __init__(self, policy: SlaPolicy, issuer_keys: IssuerKeySource | None = None) -> None:
        self._policy = policy
        self._issuer_keys = issuer_keys

    @activity.defn(name=LOAD_POLICY_ACTIVITY)
    async def load_policy(self) -> SlaPolicy:
        if self._issuer_keys is None:
            return self._policy
        return dataclasses.replace(self._policy, issuer_keys=self._issuer_keys())
