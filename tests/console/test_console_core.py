"""The console's own rules, in process (httpx against the ASGI app): the
security headers, the session cookie, CSRF on every form, idle sign-out,
the language switch and the pages' languages. The services are not needed
for these (the browser tests run the real stack); a call that would reach
one is refused here as the services would refuse an unknown person."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from console.app import build_app
from console.backend import Backend, Refused
from masar.platform.settings import ConsoleSettings
from masar.v1 import network_pb2

pytestmark = pytest.mark.asyncio


class NoServices(Backend):
    """Every sign-in refused, as the network service refuses a wrong password."""

    def __init__(self, settings: ConsoleSettings) -> None:
        super().__init__(settings)
        self.sign_ins: list[str] = []

    async def sign_in(self, login: str, password: str, totp: str) -> network_pb2.SignedIn:
        self.sign_ins.append(login)
        raise Refused("signed_out", "refused")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = ConsoleSettings.from_env({"MASAR_CONSOLE_IDLE_SECONDS": "1"})
    app = build_app(settings, backend=NoServices(settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console.test"
    ) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def test_every_page_carries_the_security_headers_and_a_strict_cookie(client) -> None:
    page = await client.get("/signin")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "<script>" not in page.text  # only the one file: /static/console.js


async def test_a_form_without_its_csrf_token_is_refused_and_nothing_is_called(client) -> None:
    await client.get("/signin")
    backend: NoServices = client._transport.app.state.console.backend
    refused = await client.post("/signin", data={"login": "shelter.fes", "password": "x" * 12})
    assert refused.status_code == 403
    assert backend.sign_ins == []
    for path in ("/notifications/n-1/ack", "/cases/0123456789abcdef/extend", "/signout"):
        answer = await client.post(path, data={"reason": "r"}, follow_redirects=False)
        assert answer.status_code in (303, 403)
        if answer.status_code == 303:
            assert answer.headers["location"] == "/signin"


async def test_a_wrong_password_says_so_without_echoing_it(client) -> None:
    page = await client.get("/signin")
    answer = await client.post(
        "/signin",
        data={"csrf": csrf_of(page.text), "login": "shelter.fes", "password": "secret-password-1"},
    )
    assert answer.status_code == 401
    assert "secret-password-1" not in answer.text


async def test_pages_need_a_sign_in(client) -> None:
    for path in ("/board", "/referrals", "/cases", "/notifications", "/cases/0123456789abcdef"):
        answer = await client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/signin", path


async def test_the_language_follows_the_browser_then_the_switch(client) -> None:
    arabic = await client.get("/signin", headers={"accept-language": "ar-MA,ar;q=0.9"})
    assert '<html lang="ar" dir="rtl">' in arabic.text
    switched = await client.post(
        "/language",
        data={"csrf": csrf_of(arabic.text), "language": "en", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert switched.headers["location"] == "/"  # never an open redirect
    english = await client.get("/signin")
    assert '<html lang="en" dir="ltr">' in english.text


async def test_an_idle_session_is_ended(client) -> None:
    first = await client.get("/signin")
    sid = first.cookies.get("masar_session")
    await asyncio.sleep(1.2)
    again = await client.get("/signin")
    assert again.cookies.get("masar_session") not in (None, sid)  # a new session
