"""A tiny workflow for the end-to-end trace test (its own module: the
workflow sandbox re-imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

LOOKUP_ACTIVITY = "trace_probe.lookup"


@dataclass
class ProbeRequest:
    case_id: str
    # Stand-ins for a survivor's personal data: no span may carry them.
    alias: str
    contact: str


@workflow.defn(name="TraceProbe")
class TraceProbeWorkflow:
    @workflow.run
    async def run(self, request: ProbeRequest) -> str:
        return await workflow.execute_activity(
            LOOKUP_ACTIVITY,
            request,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
