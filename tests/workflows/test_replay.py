"""Replay every recorded history with the current workflow code.

The fixtures in histories/ were recorded from real runs by
record_histories.py, which never records over an existing one. A change to
SurvivorJourney that would not replay one of them (a non-deterministic change
for a running journey) fails here; such a change belongs behind
`workflow.patched(...)`, with a new fixture for the new path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowReplayResult

from tests.workflows import record_histories
from tests.workflows.support import recorded_data_converter
from workflows.care import CARE_PATCH
from workflows.journey import AUTHENTICATED_UPDATES, SurvivorJourney
from workflows.lanes import ActionLanes
from workflows.notices import NOTIFICATIONS_PATCH
from workflows.state import Action, ActionKind, RequestPurpose

HISTORY_DIR = Path(__file__).with_name("histories")
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))


def workflow_id(path: Path) -> str:
    """Fixture names are <scenario>@<workflow id>[.<run>].json."""
    return path.stem.split("@", 1)[1].split(".", 1)[0]


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id(path), path.read_text())


def fixture(scenario: str) -> Path:
    (path,) = HISTORY_DIR.glob(f"{scenario}@*.json")
    return path


async def replay(path: Path, **options: Any) -> WorkflowReplayResult:
    replayer = Replayer(
        workflows=[SurvivorJourney], data_converter=recorded_data_converter(), **options
    )
    return await replayer.replay_workflow(load(path), raise_on_replay_failure=False)


def test_the_fixtures_cover_the_scenarios() -> None:
    scenarios = {path.stem.split("@", 1)[0] for path in HISTORIES}
    assert {
        "full_chain",
        "ladder_to_expiry",
        "declines_and_consent",
        "clinical_windows",
        "coordinators_and_closure",
        "continue_as_new",
        "retries_exhausted",
        "activity_timeout",
        "reroute_queued_in_lane",
        "transfers",
        "authenticated_updates",
        "notifications",
        "care_sectors",
        "medical_referral_ladder",
        "protection_order_breach",
    } <= scenarios
    # Every scenario the recorder knows has its fixtures, and nothing else is there.
    assert scenarios == set(record_histories.SCENARIOS)
    # The continue-as-new scenario has several runs, each replayed on its own.
    assert len([p for p in HISTORIES if p.name.startswith("continue_as_new@")]) >= 2


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    result = await replay(path)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


def _patches(path: Path) -> set[str]:
    history = load(path)
    return {
        event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data.decode()
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        and event.marker_recorded_event_attributes.marker_name == "core_patch"
    }


# Recorded before the authenticated-Updates patch, then before the notifications one.
BEFORE_AUTHENTICATION = {
    "full_chain",
    "ladder_to_expiry",
    "declines_and_consent",
    "clinical_windows",
    "coordinators_and_closure",
    "continue_as_new",
    "retries_exhausted",
    "activity_timeout",
    "reroute_queued_in_lane",
    "transfers",
}
BEFORE_NOTIFICATIONS = BEFORE_AUTHENTICATION | {"authenticated_updates"}
BEFORE_CARE = BEFORE_NOTIFICATIONS | {"notifications"}


def _scenario(path: Path) -> str:
    return path.name.split("@", 1)[0]


def test_only_the_new_fixture_ran_with_authenticated_updates() -> None:
    """The histories recorded before the patch hold Updates without actor
    assertions and replay without the handler's checks; the new one ran with
    them (and replays with them), as did every fixture recorded after it."""
    for path in HISTORIES:
        patched = any(AUTHENTICATED_UPDATES in patch for patch in _patches(path))
        assert patched == (_scenario(path) not in BEFORE_AUTHENTICATION), path.name


def test_only_the_notifications_fixture_told_anyone() -> None:
    """Histories recorded before the notifications patch replay without
    telling anyone (no network.notify in them); the new one ran with it."""
    for path in HISTORIES:
        patched = any(NOTIFICATIONS_PATCH in patch for patch in _patches(path))
        assert patched == (_scenario(path) not in BEFORE_NOTIFICATIONS), path.name
        notified = "network.notify" in path.read_text()
        assert notified == patched, path.name


def test_only_the_care_fixtures_referred_to_the_care_sectors() -> None:
    """Histories recorded before the care patch replay without the care
    sectors (no health or psychosocial activity in them); the new ones ran
    with it."""
    for path in HISTORIES:
        patched = any(CARE_PATCH in patch for patch in _patches(path))
        assert patched == (_scenario(path) not in BEFORE_CARE), path.name
        referred = "health.request_referral" in path.read_text()
        assert referred == patched, path.name


# --- the recorder never records over a fixture ---------------------------------------


@pytest.mark.parametrize("scenario", sorted(record_histories.SCENARIOS))
def test_the_recorder_refuses_a_scenario_that_has_fixtures(scenario: str) -> None:
    with pytest.raises(record_histories.FixtureExists, match="never recorded over"):
        record_histories.check_new([scenario])


def test_the_recorder_stops_before_running_anything(capsys: pytest.CaptureFixture[str]) -> None:
    before = {path: path.read_text() for path in HISTORIES}
    # Asked for a recorded scenario: a one-line refusal and exit status 2,
    # before any server starts (this would otherwise take minutes).
    assert record_histories.main(["full_chain"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert {path: path.read_text() for path in HISTORIES} == before
    # Without arguments it records only the scenarios that have no fixtures: none.
    assert record_histories.unrecorded() == []


# --- the fixtures guard what they claim ------------------------------------------------


def _is_reroute(action: Action) -> bool:
    return action.kind == ActionKind.REQUEST and action.purpose == RequestPurpose.REROUTE


@pytest.fixture
def reroute_kept_last(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A plausible wrong change: a reroute always moves to the end of its lane,
    behind whatever was owed in that lane after it."""
    owe = ActionLanes.owe

    def owe_keeping_reroutes_last(self: ActionLanes, *args: Any, **kwargs: Any) -> Action:
        action = owe(self, *args, **kwargs)
        owed = self.owed
        for reroute in [a for a in owed if _is_reroute(a)]:
            owed.remove(reroute)
            in_lane = [i for i, other in enumerate(owed) if other.lane == reroute.lane]
            owed.insert(in_lane[-1] + 1 if in_lane else len(owed), reroute)
        return action

    monkeypatch.setattr(ActionLanes, "owe", owe_keeping_reroutes_last)
    yield


# The mutation lives in this process, so these replays run unsandboxed (the
# sandbox would re-import a pristine workflows.lanes).
UNSANDBOXED = {"workflow_runner": UnsandboxedWorkflowRunner()}


async def test_the_reroute_fixture_replays_with_the_real_lane_order() -> None:
    result = await replay(fixture("reroute_queued_in_lane"), **UNSANDBOXED)
    assert result.replay_failure is None, repr(result.replay_failure)


@pytest.mark.usefixtures("reroute_kept_last")
async def test_a_reroute_moved_to_the_end_of_its_lane_does_not_replay() -> None:
    result = await replay(fixture("reroute_queued_in_lane"), **UNSANDBOXED)
    assert isinstance(result.replay_failure, workflow.NondeterminismError), repr(
        result.replay_failure
    )
