"""The browser-test harness itself, without the console or a stack: chromium
starts, a page under the console's Content-Security-Policy (served here)
renders, a screenshot is written, axe-core finds what it should — and
asyncio works as before around a browser test."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.console.harness import artifacts_dir, describe_violations, shot

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The console's policy (console/app.py): no inline script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
GOOD = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Harness</title></head>
<body><main><h1>Harness</h1>
<form><label for="who">Username</label><input id="who" name="who"></form>
</main></body></html>"""
# An unlabelled input and an image without text: critical for axe.
BAD = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Harness</title></head>
<body><main><h1>Harness</h1><input name="who"><img src="data:,"></main></body></html>"""
INLINE = b"""<!doctype html><html lang="en"><head><title>Inline</title></head>
<body><main><h1 id="h">untouched</h1>
<script>document.getElementById("h").textContent = "ran"</script></main></body></html>"""
PAGES = {"/good": GOOD, "/bad": BAD, "/inline": INLINE}


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_chromium_renders_a_page_and_a_screenshot_is_written(
    page: Page, request: pytest.FixtureRequest
) -> None:
    page.goto("data:text/html,<title>Harness</title><main><h1>Harness works</h1></main>")
    assert page.title() == "Harness"
    assert page.locator("h1").inner_text() == "Harness works"
    path = shot(page, "harness-data-url")
    assert path == artifacts_dir() / "harness-data-url.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="shot name"):
        shot(page, "../elsewhere")
    # The harness alone: no stack was started for this.
    assert "console_stack" not in request.fixturenames


def test_the_page_keeps_its_csp(page: Page, site: str) -> None:
    page.goto(f"{site}/inline")
    assert page.locator("h1").inner_text() == "untouched"


def test_axe_finds_serious_and_critical_violations_under_the_csp(
    page: Page, site: str, axe_check: Callable[[Page], list[dict[str, Any]]]
) -> None:
    page.goto(f"{site}/good")
    assert axe_check(page) == []
    page.goto(f"{site}/bad")
    found = axe_check(page)
    assert {v["id"] for v in found} >= {"label", "image-alt"}, describe_violations(found)
    assert {v["impact"] for v in found} <= {"serious", "critical"}
    assert "critical: label" in describe_violations(found)


def test_asyncio_runs_between_browser_tests() -> None:
    """Playwright's loop is not left marked as running for other tests."""
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"


async def test_an_async_test_runs_after_a_browser_test() -> None:
    await asyncio.sleep(0)
