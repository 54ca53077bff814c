"""Real processes for tests: `masar up` on free ports and a temporary data dir."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from masar.devstack.plan import SERVICES
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
# `masar up`, with the interpreter running the tests.
UP = [sys.executable, "-m", "masar.cli", "up"]


def port_pair() -> int:
    """A free Temporal port whose web UI port (+1000) is free too."""
    for _ in range(50):
        port = free_port()
        if port > 64535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def config_home(data_dir: Path) -> Path:
    """The user configuration directory of a test stack's CLI, beside its data dir."""
    data_dir = data_dir.resolve()
    return data_dir.parent / f"{data_dir.name}-config"


def stack_env(data_dir: Path) -> dict[str, str]:
    """The environment of a stack on free ports, every port distinct."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MASAR_", "OTEL_")) or k == "MASAR_TEST_POSTGRES_URL"
    }
    temporal = port_pair()
    taken = {temporal, temporal + 1000}

    def distinct() -> int:
        while (port := free_port()) in taken:
            pass
        taken.add(port)
        return port

    env.update(
        {
            # `masar login` keeps its session there: never the tester's own.
            "XDG_CONFIG_HOME": str(config_home(data_dir)),
            "MASAR_DATA_DIR": str(data_dir),
            "MASAR_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
            "MASAR_TEMPORAL_METRICS_PORT": str(distinct()),
            "MASAR_JOURNEY_METRICS_PORT": str(distinct()),
            "MASAR_LOG_LEVEL": "WARNING",
        }
    )
    for name in SERVICES:
        env[f"MASAR_{name.upper()}_ADDR"] = f"127.0.0.1:{distinct()}"
        env[f"MASAR_{name.upper()}_METRICS_PORT"] = str(distinct())
    env["MASAR_CONSOLE_ADDR"] = f"127.0.0.1:{distinct()}"
    return env


class Up:
    """`masar up --json` (as `python -m masar.cli up --json`), or `command`
    running it (e.g. `make`); with `own_group`, in a process group of its own
    (as a service manager or a terminal starts it)."""

    def __init__(
        self,
        env: dict[str, str],
        err_path: Path,
        *,
        command: list[str] | None = None,
        own_group: bool = False,
    ) -> None:
        self.err_path = err_path
        self._err = open(err_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            command or [*UP, "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            process_group=0 if own_group else None,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def endpoints(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return dict(json.loads(self._lines.get(timeout=0.5)))
            except queue.Empty:
                if self.proc.poll() is not None:
                    pytest.fail(f"masar up exited ({self.proc.returncode}):\n{self.stderr()}")
        pytest.fail(f"masar up not ready after {timeout:.0f}s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_stderr(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not said within {timeout:.0f}s:\n{self.stderr()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
