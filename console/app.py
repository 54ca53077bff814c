"""The console's Starlette application and its server.

Every response carries the security headers (a Content-Security-Policy with
no inline script, no framing, no referrer, no caching of pages that may
show personal data); every request is tied to a server-side session by a
`HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS) holding a random
id. Requests that only refresh a live part of a page (`X-Masar-Live`) do not
count as activity, so an idle session is still signed out."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console import i18n
from console.backend import Backend
from console.pages import auth, board, cases, intake, notifications, staff
from console.sessions import COOKIE, SessionStore
from console.web import Console, render
from masar.platform.logs import setup_logging
from masar.platform.settings import ConsoleSettings, SettingsError

log = logging.getLogger("masar.console")
STATIC = Path(__file__).parent / "static"
LIVE_HEADER = "x-masar-live"

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SessionMiddleware(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.monotonic()
        console: Console = request.app.state.console
        store = console.sessions
        sid = request.cookies.get(COOKIE)
        live = request.headers.get(LIVE_HEADER) == "1"
        session, idled = (None, False)
        if sid:
            if live:
                session = store.peek(sid)
            else:
                session, idled = store.get(sid)
        if session is None:
            if live and sid:
                # A live refresh of a page whose session has ended: reload it.
                return Response(status_code=204, headers={"X-Masar-Reload": "1"})
            session = store.new(i18n.best_match(request.headers.get("accept-language")))
            if idled:
                session.flash(i18n.N_("You were signed out after a period without activity."))
        request.state.session = session
        response = await call_next(request)
        if request.cookies.get(COOKIE) != session.sid and not live:
            response.set_cookie(
                COOKIE,
                session.sid,
                httponly=True,
                samesite="strict",
                secure=console.secure_cookies,
                path="/",
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        # The route, never the query string or a form: no personal data in the log.
        log.info(
            "request",
            extra={
                "method": request.method,
                "route": _route_of(request),
                "status": response.status_code,
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    name = getattr(route, "path", None)
    return str(name) if name else "(unrouted)"


async def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/static/"):
        return PlainTextResponse("not found", status_code=404)
    return render(request, "not_found.html", status_code=404)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app(settings: ConsoleSettings, backend: Backend | None = None) -> Starlette:
    chosen = backend or Backend(settings)
    console = Console(
        chosen, SessionStore(settings.idle_seconds), secure_cookies=settings.secure_cookies
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.console = console
        try:
            yield
        finally:
            await chosen.close()

    routes = [
        Route("/healthz", health, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *auth.routes,
        *staff.routes,
        *intake.routes,
        *cases.routes,
        *board.routes,
        *notifications.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SessionMiddleware)],
        exception_handlers={404: not_found},
        lifespan=lifespan,
    )
    app.state.console = console
    return app


def serve(environ: dict[str, str] | None = None) -> int:
    try:
        settings = ConsoleSettings.from_env(environ)
    except SettingsError as exc:
        print(f"console: {exc}")
        return 2
    common = settings.common
    setup_logging("console", level=common.log_level, fmt=common.log_format)
    host, _, port = settings.addr.rpartition(":")
    log.info("console listening", extra={"addr": settings.addr})
    uvicorn.run(
        build_app(settings),
        host=host.strip("[]"),
        port=int(port),
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    return 0
