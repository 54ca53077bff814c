"""The journey worker's own activity: handing its SLA policy to journeys.

The worker loads and checks the policy file once, at start; every journey run
asks for it through this local activity, so the policy is recorded in the
journey's history and workflow code never reads a file.
"""

from __future__ import annotations

from temporalio import activity

from workflows.policy import LOAD_POLICY_ACTIVITY, SlaPolicy


class PolicyActivities:
    def __init__(self, policy: SlaPolicy) -> None:
        self._policy = policy

    @activity.defn(name=LOAD_POLICY_ACTIVITY)
    async def load_policy(self) -> SlaPolicy:
        return self._policy
