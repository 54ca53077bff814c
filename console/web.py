"""What every page uses: the template environment, rendering with the
person's language, role checks, and form actions that verify the CSRF token
before anything else runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from console import i18n
from console.backend import Backend, Refused
from console.sessions import Session, SessionStore

log = logging.getLogger("masar.console")
TEMPLATES = Path(__file__).parent / "templates"

# Roles (network AccountRole, lower case) and what they work on.
STAFF_SECTORS = {
    "shelter_staff": "shelter",
    "legal_aid": "legal",
    "employment_officer": "employment",
    "health_staff": "health",
    "psychosocial_staff": "psychosocial",
}
CASE_HOLDERS = frozenset({"intake_officer", "supervisor", "care_unit_officer"})
COORDINATOR = "coordinator"
HOME = {
    **{role: "/referrals" for role in STAFF_SECTORS},
    **{role: "/cases" for role in CASE_HOLDERS},
    COORDINATOR: "/board",
}


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str  # a message id, translated when rendered
    roles: frozenset[str]


NAV = (
    NavItem("/referrals", i18n.N_("Referrals"), frozenset(STAFF_SECTORS)),
    NavItem("/capacity", i18n.N_("Capacity"), frozenset({"shelter_staff", "employment_officer"})),
    NavItem("/cases", i18n.N_("Cases"), CASE_HOLDERS),
    NavItem("/cases/new", i18n.N_("Register a case"), CASE_HOLDERS),
    NavItem("/board", i18n.N_("Journeys"), frozenset({COORDINATOR})),
    NavItem("/escalations", i18n.N_("Escalations"), frozenset({COORDINATOR})),
    NavItem("/notifications", i18n.N_("Notifications"), frozenset()),  # everyone
)


def home_of(session: Session) -> str:
    return HOME.get(session.role, "/notifications")


class Console:
    """The console's shared parts, on `app.state.console`."""

    def __init__(self, backend: Backend, sessions: SessionStore, *, secure_cookies: bool) -> None:
        self.backend = backend
        self.sessions = sessions
        self.secure_cookies = secure_cookies
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def session_of(request: Request) -> Session:
    found: Session = request.state.session
    return found


def language_of(request: Request) -> str:
    return i18n.language(session_of(request).language).code


def gettext(request: Request) -> i18n.Gettext:
    return i18n.gettext_for(language_of(request))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    console = console_of(request)
    session = session_of(request)
    code = language_of(request)
    lang = i18n.language(code)
    _ = i18n.gettext_for(code)
    nav = [
        (item.path, _(item.label), request.url.path == item.path)
        for item in NAV
        if session.signed_in and (not item.roles or session.role in item.roles)
    ]
    page = console.templates.get_template(template).render(
        _=_,
        lang=lang,
        languages=i18n.LANGUAGES.values(),
        session=session,
        csrf=session.csrf,
        nav=nav,
        path=request.url.path,
        flashes=session.take_flashes(),
        idle_seconds=console.sessions.idle_seconds,
        when=lambda moment, form="medium": i18n.local_time(moment, code, form=form),
        left=lambda due: i18n.time_left(due, code),
        num=lambda value: i18n.number(value, code),
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


def refusal_page(request: Request, refusal: Refused) -> Response:
    """The page for a refused call: nothing of what was asked for is shown."""
    if refusal.kind == "signed_out":
        return RedirectResponse("/signin?ended=1", status_code=303)
    status = {"not_allowed": 403, "not_found": 404, "conflict": 409, "invalid": 400}.get(
        refusal.kind, 503
    )
    log.info("refused", extra={"kind": refusal.kind, "service": refusal.service})
    return render(request, "refused.html", status_code=status, refusal=refusal)


Handler = Callable[[Request], Awaitable[Response]]
FormHandler = Callable[[Request, FormData], Awaitable[Response]]


def page(path: str, handler: Handler, *, roles: Iterable[str] | None = None) -> Route:
    """A GET page for signed-in people of `roles` (everyone signed in if None)."""
    allowed = frozenset(roles) if roles is not None else None

    async def endpoint(request: Request) -> Response:
        denied = _gate(request, allowed)
        if denied is not None:
            return denied
        try:
            return await handler(request)
        except Refused as refusal:
            return refusal_page(request, refusal)

    return Route(path, endpoint, methods=["GET"], name=path)


def action(path: str, handler: FormHandler, *, roles: Iterable[str] | None = None) -> Route:
    """A POST form action: the CSRF token is checked before anything else."""
    allowed = frozenset(roles) if roles is not None else None

    async def endpoint(request: Request) -> Response:
        form = await request.form()
        session = session_of(request)
        token = form.get("csrf")
        if not session.csrf_ok(token if isinstance(token, str) else None):
            log.warning("form refused: missing or wrong CSRF token", extra={"path": path})
            return render(request, "refused.html", status_code=403, refusal=_CSRF)
        denied = _gate(request, allowed)
        if denied is not None:
            return denied
        try:
            return await handler(request, form)
        except Refused as refusal:
            return refusal_page(request, refusal)

    return Route(path, endpoint, methods=["POST"], name=f"POST {path}")


_CSRF = Refused("csrf", "the form was not sent from this console page (missing security token)")


def _gate(request: Request, allowed: frozenset[str] | None) -> Response | None:
    session = session_of(request)
    if not session.signed_in:
        return RedirectResponse("/signin", status_code=303)
    if allowed is not None and session.role not in allowed:
        return render(
            request,
            "refused.html",
            status_code=403,
            refusal=Refused("not_allowed", "this page is not for your role"),
        )
    return None


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def back(path: str) -> RedirectResponse:
    """After an action: see the result (POST, redirect, GET)."""
    return RedirectResponse(path, status_code=303)
