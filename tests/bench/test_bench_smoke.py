"""Each benchmark, tiny: it runs, reports sane figures, and writes its JSON.
Never a performance gate: the figures are not compared with anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main
from tests.conftest import postgres_server_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run(tmp_path: Path, *argv: str) -> dict[str, Any]:
    results = tmp_path / "results"
    assert main([*argv, "--results-dir", str(results), "--data-dir", str(tmp_path / "data")]) == 0
    document: dict[str, Any] = json.loads((results / f"{argv[0]}.json").read_text())
    assert document["machine"]["cores"] == os.cpu_count()
    return document


def sane(latency: dict[str, float]) -> None:
    assert latency["count"] > 0
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


def test_throughput_against_bare_temporal(tmp_path: Path) -> None:
    figures = run(tmp_path, "throughput", "--journeys", "3", "--concurrency", "3")
    for side in ("masar", "bare"):
        assert figures[side]["journeys"] == 3, figures[side]["failure_kinds"]
        assert figures[side]["journeys_per_second"] > 0
        sane(figures[side]["decision_to_status"])
    assert figures["masar"]["decision_to_status"]["count"] == 9  # three decisions each
    assert figures["ratio_to_bare"] > 0


def test_open_journeys_and_a_burst_of_deadlines(tmp_path: Path) -> None:
    figures = run(
        tmp_path,
        "scale",
        "--open",
        "4",
        "--burst",
        "3",
        "--burst-deadline",
        "6",
        "--register-concurrency",
        "4",
    )
    assert figures["creation"]["parked_journeys_per_second"] > 0
    assert all(v > 0 for v in figures["memory_open_mib"].values())
    assert figures["storage_open"]["temporal_db_mib"] > 0
    burst = figures["burst"]
    assert burst["deadlines"] == 3
    assert burst["visible_in_search_attributes"]["missing"] == 0
    sane(burst["visible_in_search_attributes"])
    sane(burst["in_timeline"])


def test_service_capacity(tmp_path: Path) -> None:
    postgres = postgres_server_url()  # in CI, required
    database = ["--postgres-url", postgres] if postgres else ["--no-postgres"]
    figures = run(tmp_path, "capacity", "--cycles", "6", "--cycle-concurrency", "3", *database)
    for name in ("sqlite", "postgresql") if postgres else ("sqlite",):
        for kind in ("placements", "enrolments"):
            result = figures[name][kind]
            assert result["cycles"] == 6, result["failure_kinds"]
            assert result["per_second"] > 0
            sane(result["cycle"])
