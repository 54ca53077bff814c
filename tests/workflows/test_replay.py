"""Replay every recorded history with the current workflow code.

The fixtures in histories/ were recorded from real runs by
record_histories.py. A change to SurvivorJourney that would not replay one of
them (a non-deterministic change for a running journey) fails here; such a
change belongs behind `workflow.patched(...)`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.workflows.support import recorded_data_converter
from workflows.journey import SurvivorJourney

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


def workflow_id(path: Path) -> str:
    """Fixture names are <scenario>@<workflow id>[.<run>].json."""
    return path.stem.split("@", 1)[1].split(".", 1)[0]


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id(path), path.read_text())


def test_the_fixtures_cover_the_scenarios() -> None:
    scenarios = {path.stem.split("@", 1)[0] for path in HISTORIES}
    assert {
        "full_chain",
        "ladder_to_expiry",
        "declines_and_consent",
        "clinical_windows",
        "coordinators_and_closure",
        "continue_as_new",
    } <= scenarios
    # The continue-as-new scenario has several runs, each replayed on its own.
    assert len([p for p in HISTORIES if p.name.startswith("continue_as_new@")]) >= 2


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = load(path)
    replayer = Replayer(workflows=[SurvivorJourney], data_converter=recorded_data_converter())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"
