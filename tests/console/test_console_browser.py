"""The console in real Chromium against a real stack (`masar up`, seeded;
tests/console/conftest.py): every page through the services' APIs with the
signed-in person's token, journeys through intake's journey API.

- shelter staff sign in, see a new referral, accept it — the journey (read
  with `masar case show`, the journey API) shows it accepted — and record
  the check-in;
- health staff sign in, see a medical referral (a rape 60 hours ago), accept
  it and record PEP started: the journey shows the PEP window met;
- a coordinator signs in with her authenticator code, sees a high-risk
  journey escalate on her board within seconds (harness.FAST_POLICY),
  extends the deadline with a reason, and the case page shows the new one;
- the Arabic pages are right to left, the navigation on the right, and no
  English string is left on them;
- staff of one organisation opening another's referral get "not allowed"
  and nothing of it;
- a form posted without its CSRF token is refused; the survivor's alias is
  never in a URL, a title or the console's log, even once a coordinator has
  asked to see it;
- an idle session is signed out (a second console on the same stack, with a
  seconds-scale idle time); the main pages fit a phone's width;
- axe-core finds no serious or critical violation on the main pages in each
  language, and screenshots of them are written (test-artifacts/console/).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from babel.messages.pofile import read_po

from console.i18n import catalog_path
from masar.contract import REFERRAL_ID_PREFIX, Sector
from tests.conftest import free_port
from tests.console.harness import ConsoleStack, describe_violations, shot
from tests.processes import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ALIAS = "Canary-Zahra-5c19e"
CONTACT = "+212600880011"
FES = "fes-meknes"
LANGUAGES = ("ar", "fr", "en")


# --- helpers ----------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, *, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {within:.0f}s")


def open_case(
    stack: ConsoleStack, *, risk: str, region: str = FES, as_user: str | None = None
) -> str:
    if as_user is not None:
        stack.accounts[as_user]  # signed in (her first password changed)
    opened = stack.masar_json(
        "case", "open", "--region", region, "--risk", risk, "--needs", "shelter",
        "--consent", "shelter", "--alias", ALIAS, "--contact", CONTACT,
        as_user=as_user,
    )  # fmt: skip
    return str(opened["case_id"])


def journey(stack: ConsoleStack, case_id: str) -> dict[str, Any]:
    status: dict[str, Any] = stack.masar_json("case", "show", case_id)
    return status


def sector_referral(stack: ConsoleStack, case_id: str, sector: str, status: str) -> dict[str, Any]:
    # By the id's prefix: `masar case show` names no sector for a medical
    # referral (SECTOR_MEDICAL is the health sector).
    prefix = REFERRAL_ID_PREFIX[Sector(sector)] + "-"

    def found() -> dict[str, Any] | None:
        for ref in journey(stack, case_id)["referrals"]:
            if str(ref["referral_id"]).startswith(prefix) and str(ref["status"]).upper() == status:
                return dict(ref)
        return None

    ref: dict[str, Any] = wait_for(found, f"a {status} {sector} referral of {case_id}")
    return ref


def shelter_referral(stack: ConsoleStack, case_id: str, status: str) -> dict[str, Any]:
    return sector_referral(stack, case_id, "shelter", status)


def sign_in(page: Page, stack: ConsoleStack, username: str) -> None:
    account = stack.accounts[username]
    page.goto(f"{stack.url}/signin")
    page.fill("#login", account.username)
    page.fill("#password", account.password)
    code = account.next_totp()
    if code:
        page.fill("#totp", code)
    with page.expect_navigation():
        page.click("form[action='/signin'] button[type=submit]")
    assert "/signin" not in page.url, page.inner_text("main")


def switch_language(page: Page, code: str) -> None:
    page.select_option("#language-switch", code)
    with page.expect_navigation():
        page.click("form[action='/language'] button[type=submit]")
    assert page.get_attribute("html", "lang") == code


def submit(page: Page, form: str) -> None:
    """Click a form's submit button, accepting its confirmation."""
    with page.expect_navigation():
        page.click(f"{form} button[type=submit]")


@pytest.fixture
def visits(page: Page) -> Iterator[list[tuple[str, str]]]:
    """Every URL the page navigates to, with the page's title there."""
    seen: list[tuple[str, str]] = []

    def record(frame: Any) -> None:
        if frame == page.main_frame:
            seen.append((frame.url, ""))

    page.on("framenavigated", record)
    page.on("dialog", lambda dialog: dialog.accept())
    yield seen


def title_and_url_have_no_alias(page: Page) -> None:
    assert ALIAS not in page.url and ALIAS not in page.title()


# --- shelter staff ----------------------------------------------------------------------------


def test_shelter_staff_accept_a_new_referral_and_record_the_check_in(
    console_stack: ConsoleStack, page: Page, visits: list[tuple[str, str]]
) -> None:
    case_id = open_case(console_stack, risk="medium")
    referral = shelter_referral(console_stack, case_id, "PENDING")
    referral_id = referral["referral_id"]

    sign_in(page, console_stack, "shelter.fes")
    assert page.url.endswith("/referrals")
    row = page.locator(f"tr[data-referral='{referral_id}']")
    wait_for(lambda: (page.reload(), row.count())[1], "the new referral in the inbox", within=30)
    with page.expect_navigation():
        row.locator("a").first.click()
    assert page.locator("section[data-status='pending']").count() == 1
    submit(page, "form[data-action='accept']")
    assert page.locator(".flash").count() >= 1
    shelter_referral(console_stack, case_id, "ACCEPTED")  # the journey knows

    page.goto(f"{console_stack.url}/referrals/{referral_id}")
    submit(page, "form[data-action='start']")
    shelter_referral(console_stack, case_id, "IN_SERVICE")
    for url, _ in visits:
        assert ALIAS not in url
    title_and_url_have_no_alias(page)


# --- health staff -----------------------------------------------------------------------------


def window_status(stack: ConsoleStack, case_id: str, item: str) -> str:
    for window in journey(stack, case_id)["clinical_windows"]:
        if str(window["item"]).lower() == item:
            return str(window["status"]).upper()
    return ""


def test_health_staff_accept_a_medical_referral_and_record_pep_started(
    console_stack: ConsoleStack,
    page: Page,
    visits: list[tuple[str, str]],
    axe_check: Callable[[Page], list[dict[str, Any]]],
) -> None:
    # A rape 60 hours ago: the PEP window has 12 hours left.
    incident = datetime.now(UTC) - timedelta(hours=60)
    opened = console_stack.masar_json(
        "case", "open", "--region", FES, "--risk", "high", "--needs", "medical",
        "--consent", "health", "--violence", "rape",
        "--incident-at", incident.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--alias", ALIAS, "--contact", CONTACT,
    )  # fmt: skip
    case_id = str(opened["case_id"])
    referral_id = sector_referral(console_stack, case_id, "health", "PENDING")["referral_id"]
    assert window_status(console_stack, case_id, "pep") == "OPEN"

    sign_in(page, console_stack, "health.fes")
    assert page.url.endswith("/referrals")
    row = page.locator(f"tr[data-referral='{referral_id}']")
    wait_for(
        lambda: (page.reload(), row.count())[1], "the medical referral in the inbox", within=30
    )
    with page.expect_navigation():
        row.locator("a").first.click()
    assert page.locator("section[data-status='pending']").count() == 1
    pep = page.locator("tr[data-window='pep']")
    assert pep.get_attribute("data-state") == "open"
    assert "hours" in pep.inner_text()  # the time left, in hours
    submit(page, "form[data-action='accept']")
    sector_referral(console_stack, case_id, "health", "ACCEPTED")  # the journey knows

    page.goto(f"{console_stack.url}/referrals/{referral_id}")
    found = axe_check(page)
    assert not found, describe_violations(found)
    shot(page, "health-referral-accepted-en")
    page.select_option("#pep-outcome", "started")
    submit(page, "form[data-action='pep']")
    assert page.locator("[data-refusal]").count() == 0, page.inner_text("main")
    assert page.locator("tr[data-window='pep']").get_attribute("data-state") == "recorded"
    assert page.locator("form[data-action='pep']").count() == 0
    # The journey closes the PEP window as met.
    wait_for(
        lambda: window_status(console_stack, case_id, "pep") == "MET",
        "the PEP window met in the journey",
        within=30,
    )
    events = [e["event"] for e in journey(console_stack, case_id)["timeline"]]
    assert "clinical_care_recorded" in events and "clinical_window_met" in events
    for url, _ in visits:
        assert ALIAS not in url
    title_and_url_have_no_alias(page)
    assert ALIAS not in console_stack.console_log()


# --- coordinators -----------------------------------------------------------------------------


def test_a_coordinator_sees_an_escalation_and_extends_the_deadline(
    console_stack: ConsoleStack, page: Page, visits: list[tuple[str, str]]
) -> None:
    case_id = open_case(console_stack, risk="high")
    sign_in(page, console_stack, "coord.fes-meknes")
    assert page.url.endswith("/board")

    def escalated_on_board() -> bool:
        page.goto(f"{console_stack.url}/board?escalated=1")
        row = page.locator(f"tr[data-case='{case_id}']")
        return row.count() == 1 and int(row.get_attribute("data-level") or 0) >= 2

    wait_for(escalated_on_board, "the escalated journey on the board", within=60)
    shot(page, "board-escalated-en")

    # The ladder keeps climbing (rerouting) while she acts: a stale target is
    # refused by the journey, and she tries again on the fresh page.
    extended_to: datetime | None = None
    for _ in range(6):
        page.goto(f"{console_stack.url}/cases/{case_id}")
        target = page.locator("#extend-target option").first.get_attribute("value")
        assert target
        page.fill("#extend-amount", "2")
        page.select_option("#extend-unit", "days")
        page.fill("#extend-reason", "shelter confirmed by phone, answer expected")
        submit(page, "#extend-form")
        if page.locator("[data-refusal]").count() == 0:
            cell = page.locator(f"tr[data-referral='{target}'] td.deadline")
            raw = cell.get_attribute("data-deadline") if cell.count() else ""
            if raw:
                extended_to = datetime.fromisoformat(raw)
                break
        time.sleep(1)
    assert extended_to is not None, page.inner_text("main")
    assert extended_to > datetime.now(UTC) + timedelta(days=1, hours=12)
    timeline = [e["event"] for e in journey(console_stack, case_id)["timeline"]]
    assert "deadline_extended" in timeline

    # Personal data only on request (intake audits the reading), never in a URL or title.
    assert ALIAS not in page.inner_text("main")
    submit(page, "form[action$='/reveal']")
    assert ALIAS in page.inner_text("#personal")
    title_and_url_have_no_alias(page)
    for url, _ in visits:
        assert ALIAS not in url
    assert ALIAS not in console_stack.console_log()
    assert CONTACT not in console_stack.console_log()


# --- languages --------------------------------------------------------------------------------


def english_messages() -> list[str]:
    """The console's English strings that are words (4 letters or more)."""
    with catalog_path("en").open("rb") as fp:
        catalog = read_po(fp)
    return [
        str(m.id)
        for m in catalog
        if m.id and isinstance(m.id, str) and re.search(r"[A-Za-z]{4,}", m.id)
        and "%(" not in m.id
    ]  # fmt: skip


def test_arabic_pages_are_right_to_left_with_no_english_left(
    console_stack: ConsoleStack, page: Page
) -> None:
    case_id = open_case(console_stack, risk="medium", as_user="intake.fes")
    shelter_referral(console_stack, case_id, "PENDING")
    english = english_messages()
    sign_in(page, console_stack, "intake.fes")
    switch_language(page, "ar")
    for path in ("/cases", "/cases/new", f"/cases/{case_id}", "/notifications"):
        page.goto(f"{console_stack.url}{path}")
        assert (
            page.get_attribute("html", "dir") == "rtl"
            and page.get_attribute("html", "lang") == "ar"
        )
        width = page.viewport_size["width"] if page.viewport_size else 1280
        nav = page.locator("nav.nav").bounding_box()
        assert nav is not None and nav["x"] + nav["width"] > width * 0.5, "navigation on the right"
        # The language switch names each language in its own script, and the
        # names of organisations and providers are proper names (marked
        # translate="no"): neither is a string of the console's.
        text = page.evaluate(
            """() => { const b = document.body.cloneNode(true);
                       b.querySelectorAll('#language-switch, [translate="no"]')
                        .forEach((e) => e.remove());
                       document.documentElement.appendChild(b);
                       const t = b.innerText; b.remove(); return t; }"""
        )
        left = [m for m in english if re.search(rf"(?<![A-Za-z]){re.escape(m)}(?![A-Za-z])", text)]
        assert not left, f"{path}: English left on the Arabic page: {left[:10]}"


# --- scope and safety -------------------------------------------------------------------------


def test_another_organisations_referral_is_not_allowed(
    console_stack: ConsoleStack, page: Page
) -> None:
    # A case in another region: its shelter is run by another organisation.
    case_id = open_case(console_stack, risk="medium", region="casablanca-settat")
    referral_id = shelter_referral(console_stack, case_id, "PENDING")["referral_id"]
    sign_in(page, console_stack, "shelter.fes")
    answer = page.goto(f"{console_stack.url}/referrals/{referral_id}")
    assert answer is not None and answer.status == 403
    assert page.locator("[data-refusal='not_allowed']").count() == 1
    main = page.inner_text("main")
    assert "Casablanca" not in main and "form" not in page.inner_html("main").lower()


def test_a_form_without_its_csrf_token_is_refused(console_stack: ConsoleStack, page: Page) -> None:
    case_id = open_case(console_stack, risk="medium")
    referral_id = shelter_referral(console_stack, case_id, "PENDING")["referral_id"]
    sign_in(page, console_stack, "shelter.fes")
    forged = page.request.post(
        f"{console_stack.url}/referrals/{referral_id}/accept", form={"key": "forged"}
    )
    assert forged.status == 403
    time.sleep(1)
    states = [str(r["status"]).upper() for r in journey(console_stack, case_id)["referrals"]]
    assert states == ["PENDING"], states


@pytest.fixture(scope="module")
def idle_console(console_stack: ConsoleStack) -> Iterator[str]:
    """A second console on the same stack, signing out after 3 idle seconds."""
    port = free_port()
    env = {
        **console_stack.env,
        "MASAR_CONSOLE_ADDR": f"127.0.0.1:{port}",
        "MASAR_CONSOLE_IDLE_SECONDS": "3",
    }
    log = (console_stack.data_dir / "logs" / "console-idle.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "console"], cwd=ROOT, env=env, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    try:
        wait_for(healthy, "the second console", within=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_an_idle_session_is_signed_out(
    console_stack: ConsoleStack, idle_console: str, page: Page
) -> None:
    account = console_stack.accounts["shelter.fes"]
    page.goto(f"{idle_console}/signin")
    page.fill("#login", account.username)
    page.fill("#password", account.password)
    with page.expect_navigation():
        page.click("form[action='/signin'] button[type=submit]")
    assert page.url.endswith("/referrals")
    # Nothing done for longer than the idle time: the page itself goes to sign-in.
    page.wait_for_url(re.compile(r"/signin\?idle=1$"), timeout=15_000)
    assert page.locator("#login").count() == 1
    answer = page.goto(f"{idle_console}/referrals")
    assert answer is not None and page.url.endswith("/signin")


def test_the_main_pages_fit_a_phone(console_stack: ConsoleStack, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    try:
        phone = context.new_page()
        sign_in(phone, console_stack, "shelter.fes")
        for path in ("/referrals", "/capacity", "/notifications"):
            phone.goto(f"{console_stack.url}{path}")
            overflow = phone.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"{path} is {overflow}px wider than a phone"
        shot(phone, "phone-referrals-fr")
    finally:
        context.close()


# --- accessibility and screenshots, every language ---------------------------------------------


def test_the_main_pages_are_accessible_in_each_language(
    console_stack: ConsoleStack, browser: Browser, axe_check: Callable[[Page], list[dict[str, Any]]]
) -> None:
    staff_case = open_case(console_stack, risk="medium")
    referral_id = shelter_referral(console_stack, staff_case, "PENDING")["referral_id"]
    held_case = open_case(console_stack, risk="medium", as_user="intake.fes")
    people = {
        "shelter.fes": ["/referrals", f"/referrals/{referral_id}", "/capacity", "/notifications"],
        "intake.fes": ["/cases", "/cases/new", f"/cases/{held_case}"],
        "coord.fes-meknes": ["/board", "/escalations", f"/cases/{held_case}"],
    }
    problems: list[str] = []
    context = browser.new_context()
    try:
        anonymous = context.new_page()
        for code in LANGUAGES:
            anonymous.goto(f"{console_stack.url}/signin")
            switch_language(anonymous, code)
            problems += [f"{code} /signin: {describe_violations(axe_check(anonymous))}"] * bool(
                axe_check(anonymous)
            )
            shot(anonymous, f"signin-{code}")
    finally:
        context.close()
    for username, paths in people.items():
        context = browser.new_context()
        try:
            person = context.new_page()
            sign_in(person, console_stack, username)
            for code in LANGUAGES:
                switch_language(person, code)
                for path in paths:
                    person.goto(f"{console_stack.url}{path}")
                    found = axe_check(person)
                    if found:
                        problems.append(f"{code} {path}: {describe_violations(found)}")
                    name = re.sub(r"[^a-z]+", "-", path.split("/")[1] or "home")
                    detail = "-detail" if path.count("/") > 1 else ""
                    shot(person, f"{username.split('.')[0]}-{name}{detail}-{code}")
        finally:
            context.close()
    assert not problems, "\n".join(problems)
