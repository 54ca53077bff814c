"""What the console's browser tests stand on (fixtures in tests/console/conftest.py).

- The browser: Debian's chromium (/usr/bin/chromium, or $MASAR_CHROMIUM)
  driven by Playwright's sync API; never a browser Playwright downloads.
  Missing chromium or Playwright: the test fails in CI (`tests.conftest.in_ci`)
  and skips elsewhere, saying what to install.
- The stack: `masar up --json` on free ports (the console included) and
  `masar seed`; a seeded person's first password is changed the first time a
  test asks for her (`ConsoleStack.accounts[username]`), so the browser signs
  in with a known password and a fresh authenticator code (`Account.next_totp`).
- Accessibility: axe-core (from npm: `make test` installs it into
  .cache/npm) run in the page; `axe_violations` returns the serious and
  critical violations.
- Screenshots: `shot(page, name)` writes test-artifacts/console/<name>.png
  (or $MASAR_TEST_ARTIFACTS/console/<name>.png).

Playwright's sync API runs its own event loop and, between two calls, marks
it as the thread's running loop: `asyncio.run` and pytest-asyncio's tests
would then refuse to start. `PlaywrightLoop` keeps that mark to the tests
that use the browser (conftest.py claims it around each of them) and to the
browser's own start and stop, so the rest of the suite runs as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tests.conftest import in_ci
from tests.processes import ROOT, Up, stack_env

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "MASAR_CHROMIUM"
# Quiet, reproducible, no network of its own: only the pages a test opens.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
NO_CHROMIUM = "browser tests need Debian's chromium: apt-get install -y chromium (CI installs it)"
NO_PLAYWRIGHT = (
    "browser tests need the playwright Python package (dev extras): "
    "make test, or .venv/bin/pip install -e '.[dev]' (never `playwright install`)"
)
AXE_FILE = ROOT / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
NO_AXE = (
    f"accessibility checks need axe-core at {AXE_FILE.relative_to(ROOT)}: `make test` installs "
    "it with npm (npm install --prefix .cache/npm --no-audit --no-fund axe-core@4)"
)
ARTIFACTS_ENV = "MASAR_TEST_ARTIFACTS"
MASAR = [sys.executable, "-m", "masar.cli"]

# A seconds-scale SLA policy (as tests/integration/test_notifications_live.py):
# a high or critical case's shelter referral unanswered for 6 s escalates
# (reminder at half of it); medium and low keep hours, so their pages stay still.
FAST_POLICY = """
[deadlines.shelter_accept]
critical = "6s"
high = "6s"
medium = "2h"
low = "4h"
"""


def missing(reason: str) -> NoReturn:
    """A missing outside dependency: fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"in CI (CI={os.environ.get('CI', '')!r}) this cannot be skipped: {reason}")
    pytest.skip(reason)


def chromium_path() -> str:
    """The chromium to drive: $MASAR_CHROMIUM, else /usr/bin/chromium."""
    path = os.environ.get(CHROMIUM_ENV, "").strip() or CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        found = shutil.which(path) if os.sep not in path else None
        if found is None:
            missing(f"{NO_CHROMIUM} (looked for {path})")
        path = found
    return path


def need_playwright() -> None:
    """Playwright's Python package, or fail in CI / skip elsewhere."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing(NO_PLAYWRIGHT)


class PlaywrightLoop:
    """Playwright's event loop, marked as the thread's running loop only
    while a browser test (or the browser's start or stop) runs."""

    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def adopt(cls) -> None:
        """Remember the loop Playwright just started (and marked running)."""
        cls._loop = asyncio.get_running_loop()

    @classmethod
    def claim(cls) -> None:
        if cls._loop is not None and not cls._loop.is_closed():
            asyncio.events._set_running_loop(cls._loop)

    @classmethod
    def release(cls) -> None:
        if cls._loop is not None and asyncio.events._get_running_loop() is cls._loop:
            asyncio.events._set_running_loop(None)

    @classmethod
    def forget(cls) -> None:
        cls.release()
        cls._loop = None


# --- screenshots and accessibility -----------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def artifacts_dir() -> Path:
    """Where the console's test artifacts go: $MASAR_TEST_ARTIFACTS/console,
    else test-artifacts/console at the repository root."""
    base = os.environ.get(ARTIFACTS_ENV, "").strip()
    path = (Path(base).expanduser() if base else ROOT / "test-artifacts") / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot, artifacts_dir()/<name>.png; its path. The name
    is letters, digits, dots, dashes and underscores (never personal data)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"shot name must match {_NAME.pattern}, got {name!r}")
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def artifact_name(nodeid: str) -> str:
    """A file name for a test id (failure screenshots)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", nodeid).strip("-.") or "test"


def axe_source() -> str:
    """axe-core's script, or fail in CI / skip elsewhere."""
    try:
        return AXE_FILE.read_text(encoding="utf-8")
    except OSError:
        missing(NO_AXE)


BLOCKING_IMPACTS = ("serious", "critical")
_AXE_RUN = """async (impacts) => {
    const result = await axe.run(document, {resultTypes: ["violations"]});
    return result.violations
        .filter((v) => impacts.includes(v.impact))
        .map((v) => ({
            id: v.id,
            impact: v.impact,
            help: v.help,
            helpUrl: v.helpUrl,
            nodes: v.nodes.map((n) => ({target: n.target, summary: n.failureSummary})),
        }));
}"""


def axe_violations(
    page: Page, source: str, impacts: tuple[str, ...] = BLOCKING_IMPACTS
) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; the violations of `impacts`.

    The script is evaluated through the DevTools protocol, which the page's
    Content-Security-Policy does not govern: the console's CSP (no inline
    script) stays in force, and a context needs no `bypass_csp=True` (which
    `page.add_script_tag` would need, and which would hide the page's own
    CSP violations)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(f"{source}\n;undefined")
    found: list[dict[str, Any]] = page.evaluate(_AXE_RUN, list(impacts))
    return found


def describe_violations(violations: list[dict[str, Any]]) -> str:
    """One line per violation and element, for an assertion message."""
    lines = []
    for v in violations:
        for node in v["nodes"]:
            lines.append(f"{v['impact']}: {v['id']} ({v['help']}) at {node['target']}")
    return "\n".join(lines)


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Account:
    """A seeded person whose first password has been changed to `password`."""

    username: str
    password: str
    totp_secret: str | None  # coordinators, supervisors, network administrators
    account_id: str
    organisation_id: str
    organisation: str
    role: str  # e.g. "coordinator", "intake_officer" (masar seed's spelling)
    region: str
    # The last authenticator time step used: the service never accepts one twice.
    _last_step: int | None = field(default=None, repr=False)

    def next_totp(self) -> str:
        """A code the network service will accept now, never one given
        before ("" for a role without an authenticator). The service takes
        the step before, the current one and the one after: a second code
        within one 30-second step is the next step's; a third waits."""
        if self.totp_secret is None:
            return ""
        import pyotp

        totp = pyotp.TOTP(self.totp_secret, interval=30)
        while True:
            current = int(time.time()) // 30
            step = current if self._last_step is None else max(current, self._last_step + 1)
            if step <= current + 1:
                self._last_step = step
                return str(totp.generate_otp(step))
            time.sleep(max(0.05, (current + 1) * 30 - time.time()))


def password_for(username: str) -> str:
    """The password a browser test signs in with: 12+ characters, one per
    person, never holding her username (the service refuses that)."""
    digest = hashlib.sha256(username.encode()).hexdigest()[:10]
    return f"console test passphrase {digest}"


class Accounts(Mapping[str, Account]):
    """The seeded accounts by username; each one's first password is changed
    (`masar password change`) the first time a test reads it."""

    def __init__(self, stack: ConsoleStack, seeded: list[dict[str, Any]]) -> None:
        self._stack = stack
        self._seeded = {a["username"]: a for a in seeded if a.get("account_id")}
        self._ready: dict[str, Account] = {}

    def __getitem__(self, username: str) -> Account:
        account = self._ready.get(username)
        if account is None:
            seeded = self._seeded.get(username)
            if seeded is None:
                raise KeyError(f"{username!r} is not a seeded account ({', '.join(self)})")
            account = self._ready[username] = self._stack.activate(seeded)
        return account

    def __iter__(self) -> Iterator[str]:
        return iter(self._seeded)

    def __len__(self) -> int:
        return len(self._seeded)


class ConsoleStack:
    """A running `masar up` (console included), seeded."""

    def __init__(self, up: Up, env: dict[str, str], data_dir: Path, doc: dict[str, Any]) -> None:
        self.up = up
        self.env = env
        self.data_dir = data_dir
        self.endpoints = doc
        # The console's base URL, e.g. http://127.0.0.1:20123 (no trailing slash).
        self.url: str = doc["console"]["url"]
        self.seeded: dict[str, Any] = {}
        self.accounts: Accounts = Accounts(self, [])

    def log_file(self, part: str = "console") -> Path:
        """$MASAR_DATA_DIR/logs/<part>.log."""
        return self.data_dir / "logs" / f"{part}.log"

    def console_log(self) -> str:
        return self.log_file("console").read_text(encoding="utf-8", errors="replace")

    def user_env(self, username: str | None) -> dict[str, str]:
        """The CLI's environment: as `username` (signed in by her password
        change, her session in a configuration directory of her own), or,
        with None, as the local stack's own roles (nobody signed in)."""
        if username is None:
            return self.env
        home = self.data_dir.parent / "users" / username
        home.mkdir(parents=True, exist_ok=True)
        return {**self.env, "XDG_CONFIG_HOME": str(home)}

    def masar(
        self, *args: str, stdin: str = "", as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`masar ARGS` against this stack."""
        return subprocess.run(
            [*MASAR, *args],
            cwd=ROOT,
            env=self.user_env(as_user),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def masar_json(self, *args: str, stdin: str = "", as_user: str | None = None) -> Any:
        """`masar ARGS --json`, parsed; the test fails if the command does."""
        result = self.masar(*args, "--json", stdin=stdin, as_user=as_user)
        if result.returncode != 0:
            pytest.fail(f"masar {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return json.loads(result.stdout)

    def seed(self) -> None:
        self.seeded = self.masar_json("seed")
        self.accounts = Accounts(self, self.seeded["accounts"])

    def activate(self, seeded: dict[str, Any]) -> Account:
        """Change a seeded account's first password; the account, signed in
        for the CLI too (`masar_json(..., as_user=username)`)."""
        username = seeded["username"]
        first = seeded.get("first_password")
        if not first:
            pytest.fail(f"{username} has no first password (seeded before this stack?)")
        secret = None
        if seeded.get("totp_uri"):
            import pyotp

            secret = pyotp.parse_uri(seeded["totp_uri"]).secret
        account = Account(
            username=username,
            password=password_for(username),
            totp_secret=secret,
            account_id=seeded["account_id"],
            organisation_id=seeded["organisation_id"],
            organisation=seeded.get("organisation", ""),
            role=seeded["role"],
            region=seeded.get("region", ""),
        )
        stdin = f"{first}\n{account.password}\n{account.next_totp()}\n"
        changed = self.masar(
            "password", "change", "--username", username, "--password-stdin",
            stdin=stdin, as_user=username,
        )  # fmt: skip
        if changed.returncode != 0:
            pytest.fail(f"masar password change --username {username}: {changed.stderr}")
        return account


@contextlib.contextmanager
def console_stack_running(
    work_dir: Path,
    *,
    idle_seconds: int = 120,
    policy: str | None = None,
    log_level: str = "INFO",
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 180,
) -> Iterator[ConsoleStack]:
    """`masar up --json` on free ports in `work_dir` (data in work_dir/data),
    then `masar seed`; stopped on exit.

    - idle_seconds: MASAR_CONSOLE_IDLE_SECONDS (sign-out after idleness);
    - policy: an SLA policy's TOML text (e.g. FAST_POLICY), MASAR_POLICY_FILE;
    - log_level: MASAR_LOG_LEVEL of every part (INFO: the console logs each
      request's route and status);
    - extra_env: any other variable of the stack (e.g. MASAR_SMTP_URL)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = (work_dir / "data").resolve()
    env = stack_env(data_dir)
    env["MASAR_CONSOLE_IDLE_SECONDS"] = str(idle_seconds)
    env["MASAR_LOG_LEVEL"] = log_level
    if policy is not None:
        policy_file = work_dir / "policy.toml"
        policy_file.write_text(policy, encoding="utf-8")
        env["MASAR_POLICY_FILE"] = str(policy_file)
    env.update(extra_env or {})
    up = Up(env, work_dir / "up.err")
    try:
        stack = ConsoleStack(up, env, data_dir, up.endpoints(timeout=ready_timeout))
        stack.seed()
        yield stack
    finally:
        up.close()
