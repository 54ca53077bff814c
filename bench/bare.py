"""The ceiling: a bare Temporal workflow shaped like a journey, nothing else.

Three activities and three updates, as a journey with three referrals has: the
workflow runs a step's activity (a referral requested), then waits for that
step's update (the staff decision) before the next. No gRPC, no database, no
payload codec, no tracing: a plain `Client.connect` and the default data
converter. `python -m bench.bare --address HOST:PORT --task-queue Q` runs its
worker as a process of its own, as the journey worker is.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from functools import partial

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

STEPS = 3


@activity.defn(name="bare.step")
async def bare_step(step: int) -> int:
    return step


@workflow.defn(name="BareJourney")
class BareJourney:
    def __init__(self) -> None:
        self.requested = 0  # activities done
        self.decided = 0  # updates taken

    @workflow.run
    async def run(self) -> int:
        for step in range(STEPS):
            await workflow.execute_activity(
                bare_step,
                step,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            self.requested = step + 1
            await workflow.wait_condition(partial(self._decided_after, step))
        return self.decided

    def _decided_after(self, step: int) -> bool:
        return self.decided > step

    @workflow.update
    async def decide(self, step: int) -> int:
        # The decision for a step is taken once that step's request exists,
        # as staff decide a referral only once it reached them.
        await workflow.wait_condition(lambda: self.requested > step)
        self.decided = max(self.decided, step + 1)
        return self.decided

    @workflow.query
    def status(self) -> int:
        return self.decided


async def run_worker(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    worker = Worker(client, task_queue=task_queue, workflows=[BareJourney], activities=[bare_step])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="The bare workflow's worker.")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(run_worker(args.address, args.task_queue))


if __name__ == "__main__":
    main()
