"""Fixtures of the console's browser tests (helpers in tests/console/harness.py).

Each lives as long as the tests of this package (tests/console, its
subpackages included): started by the first test that asks for it, stopped
once pytest leaves the package, so the rest of the suite runs without a
browser or a stack in the background.

- `browser`: Debian's chromium through Playwright's sync API. Browser tests
  are plain `def` tests (not `async def`): Playwright's own loop is marked
  running around each of them only (harness.PlaywrightLoop).
- `page` (per test): a fresh context and page of `browser`, closed after the
  test; a failing test leaves failed-<test id>.png in the artifacts dir.
- `axe_check`: `axe_check(page)` -> the serious and critical axe-core
  violations of the page as it is now (the page's CSP stays on).
- `console_stack`: one seeded `masar up`, console included, shared by every
  browser test (starting one takes most of a minute); tests using it are
  marked `slow` and get a longer timeout here. A test module that needs other
  settings (a short idle time, harness.FAST_POLICY) starts its own:

      @pytest.fixture(scope="module")
      def idle_stack(tmp_path_factory):
          with console_stack_running(tmp_path_factory.mktemp("idle"), idle_seconds=5) as s:
              yield s

  (mark its tests `pytest.mark.slow` and `pytest.mark.timeout(420)` yourself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.console.harness import (
    CHROMIUM_ARGS,
    FAST_POLICY,
    ConsoleStack,
    PlaywrightLoop,
    artifact_name,
    artifacts_dir,
    axe_source,
    axe_violations,
    chromium_path,
    console_stack_running,
    need_playwright,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# Starting a stack (masar up, then masar seed) is part of the first test's time.
STACK_TIMEOUT = 420
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        if "console_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(STACK_TIMEOUT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Playwright's loop counts as running only during browser tests."""
    uses_browser = "browser" in getattr(item, "fixturenames", ())
    if uses_browser:
        PlaywrightLoop.claim()
    try:
        return (yield)
    finally:
        if uses_browser:
            PlaywrightLoop.release()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    need_playwright()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    PlaywrightLoop.adopt()
    try:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except BaseException:
        playwright.stop()
        PlaywrightLoop.forget()
        raise
    try:
        yield launched
    finally:
        # Perhaps after another kind of test: the loop is Playwright's again.
        PlaywrightLoop.claim()
        try:
            with contextlib.suppress(Exception):
                launched.close()
            playwright.stop()
        finally:
            PlaywrightLoop.forget()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    try:
        yield opened
        reports = request.node.stash.get(_REPORTS, {})
        if any(r.failed for r in reports.values()) and not opened.is_closed():
            with contextlib.suppress(Exception):
                name = f"failed-{artifact_name(request.node.nodeid)}.png"
                opened.screenshot(path=str(artifacts_dir() / name), full_page=True)
    finally:
        context.close()


@pytest.fixture(scope="package")
def axe_check() -> Callable[[Page], list[dict[str, Any]]]:
    source = axe_source()

    def check(page: Page) -> list[dict[str, Any]]:
        return axe_violations(page, source)

    return check


@pytest.fixture(scope="package")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """The shared stack: idle sign-out after 120 s; harness.FAST_POLICY (a high
    or critical case's shelter referral escalates within seconds; medium and
    low keep the shipped hours)."""
    with console_stack_running(
        tmp_path_factory.mktemp("console-stack"), idle_seconds=120, policy=FAST_POLICY
    ) as stack:
        yield stack
