"""Sign-in (password; TOTP too for coordinators, supervisors and
administrators), the first password change a one-time password requires,
sign-out, the language switch, and `/` sending each person to her page."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import i18n
from console.backend import Refused, adopt
from console.web import back, console_of, home_of, render, session_of, text
from masar.v1 import network_pb2

MIN_PASSWORD = 12


async def home(request: Request) -> Response:
    session = session_of(request)
    if not session.signed_in:
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse(home_of(session), status_code=303)


async def signin_page(request: Request) -> Response:
    session = session_of(request)
    if request.query_params.get("idle") == "1" and session.signed_in:
        _end(request)
        return RedirectResponse("/signin?idle=1", status_code=303)
    if session.signed_in:
        return RedirectResponse(home_of(session), status_code=303)
    notice = ""
    if request.query_params.get("idle") == "1":
        notice = i18n.N_("You were signed out after a period without activity.")
    elif request.query_params.get("ended") == "1":
        notice = i18n.N_("Your session has ended. Please sign in again.")
    return render(request, "signin.html", notice=notice, error="", login="")


async def signin(request: Request) -> Response:
    form = await request.form()
    session = session_of(request)
    if not session.csrf_ok(_str(form, "csrf")):
        return render(request, "signin.html", status_code=403, error=_FORM_EXPIRED, login="")
    login, password, totp = text(form, "login"), _str(form, "password"), text(form, "totp")
    console = console_of(request)
    try:
        signed_in = await console.backend.sign_in(login, password, totp)
    except Refused as refusal:
        if refusal.kind == "conflict":  # a one-time password: choose your own first
            return render(request, "password.html", login=login, error="")
        return _signin_error(request, refusal, login)
    console.sessions.renew(session)
    adopt(session, signed_in, username=login)
    return RedirectResponse(home_of(session), status_code=303)


async def change_password(request: Request) -> Response:
    form = await request.form()
    session = session_of(request)
    login = text(form, "login")
    if not session.csrf_ok(_str(form, "csrf")):
        return render(request, "signin.html", status_code=403, error=_FORM_EXPIRED, login="")
    new, again = _str(form, "new_password"), _str(form, "new_password_again")
    if new != again:
        return render(request, "password.html", status_code=400, login=login, error=_MISMATCH)
    if len(new) < MIN_PASSWORD:
        return render(request, "password.html", status_code=400, login=login, error=_TOO_SHORT)
    console = console_of(request)
    try:
        await console.backend.change_password(
            network_pb2.ChangePasswordRequest(
                login=login,
                current_password=_str(form, "current_password"),
                new_password=new,
                totp_code=text(form, "totp"),
            )
        )
        signed_in = await console.backend.sign_in(login, new, text(form, "totp"))
    except Refused as refusal:
        if refusal.kind == "invalid":
            return render(request, "password.html", status_code=400, login=login, error=_WEAK)
        return _signin_error(request, refusal, login)
    console.sessions.renew(session)
    adopt(session, signed_in, username=login)
    session.flash(i18n.N_("Your password is changed."))
    return RedirectResponse(home_of(session), status_code=303)


async def signout(request: Request) -> Response:
    form = await request.form()
    session = session_of(request)
    if session.csrf_ok(_str(form, "csrf")):
        _end(request)
    return RedirectResponse("/signin", status_code=303)


async def set_language(request: Request) -> Response:
    form = await request.form()
    session = session_of(request)
    chosen = text(form, "language")
    if session.csrf_ok(_str(form, "csrf")) and chosen in i18n.LANGUAGES:
        session.language = chosen
    target = text(form, "next")
    # Only a path of this console: never an open redirect.
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    return back(target)


_FORM_EXPIRED = i18n.N_("The page had expired. Please try again.")
_BAD_LOGIN = i18n.N_("Sign-in refused: check your username, password and code.")
_UNAVAILABLE = i18n.N_("Sign-in is not possible right now: the network service is not answering.")
_MISMATCH = i18n.N_("The two new passwords differ.")
_TOO_SHORT = i18n.N_("Choose a password of at least 12 characters.")
_WEAK = i18n.N_("This password was refused: choose a longer one you have not used before.")


def _signin_error(request: Request, refusal: Refused, login: str) -> Response:
    message = _UNAVAILABLE if refusal.kind == "unavailable" else _BAD_LOGIN
    status = 503 if refusal.kind == "unavailable" else 401
    return render(request, "signin.html", status_code=status, error=message, login=login)


def _end(request: Request) -> None:
    session = session_of(request)
    console_of(request).sessions.end(session.sid)
    session.access_token = ""
    session.refresh_token = ""
    session.role = ""


def _str(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


routes = [
    Route("/", home, methods=["GET"]),
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/password", change_password, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/language", set_language, methods=["POST"]),
]
