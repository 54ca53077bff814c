"""Signing in: `masar login`, `masar logout`, `masar password change`, `masar whoami`.

`logout` ends the session at the network service too (IdentityService.SignOut:
her token and her refresh token are revoked; every service refuses them
within a minute), then forgets it here.

`login` asks the network service (SignIn) for the person's tokens and
stores them (masar.cli.session); every command then acts as her. It asks
for the password on the terminal — or reads it from the first line of
standard input with `--password-stdin`, for scripts — and, when the sign-in
is refused without one, for the code of her authenticator app
(coordinators, supervisors and network administrators sign in with one; with
`--password-stdin` the code is the next line, or `--totp-code`). A first
password (one-time, handed out at account creation or reset) must be changed
before signing in: `password change` does that and signs her in.

Errors never say whether an account exists: the service answers every wrong
credential alike, and so does the CLI.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import grpc

from masar.cli import connect
from masar.cli.output import CliError, Output, when
from masar.cli.session import Session, SessionStore, current_session, from_signed_in
from masar.platform.channels import aio_channel
from masar.platform.identity import METADATA_KEY
from masar.v1 import identity_pb2, identity_pb2_grpc, network_pb2, network_pb2_grpc

MIN_PASSWORD = 12
ASK_CODE = (
    "authenticator code (6 digits; coordinators, supervisors and administrators), "
    "or Enter if your role has none: "
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    login = sub.add_parser(
        "login", help="sign in; every command then acts as you", parents=[common]
    )
    _credential_flags(login)
    login.set_defaults(handler=run_login)

    logout = sub.add_parser("logout", help="forget the stored session", parents=[common])
    logout.set_defaults(handler=run_logout)

    whoami = sub.add_parser("whoami", help="who the CLI acts as", parents=[common])
    whoami.set_defaults(handler=run_whoami)

    password = sub.add_parser("password", help="your password", parents=[common])
    password_sub = password.add_subparsers(dest="password_command", metavar="ACTION", required=True)
    change = password_sub.add_parser(
        "change",
        help="change your password (a first password too); signs you in",
        parents=[common],
    )
    _credential_flags(change, lines="the current password, then the new one")
    change.set_defaults(handler=run_password_change)


def _credential_flags(parser: argparse.ArgumentParser, *, lines: str = "the password") -> None:
    parser.add_argument(
        "--username", help="username or e-mail address (default: the last one signed in)"
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read {lines} from standard input, one a line (then the code, if any)",
    )
    parser.add_argument("--totp-code", default="", help="the code from the authenticator app")


class Answers:
    """What the person types: on the terminal, or lines of standard input."""

    def __init__(self, *, from_stdin: bool, stdin: TextIO | None = None) -> None:
        self.from_stdin = from_stdin
        self._stdin = stdin or sys.stdin
        self._lines: list[str] | None = None

    def _next_line(self) -> str:
        if self._lines is None:
            self._lines = [line.rstrip("\r\n") for line in self._stdin.read().splitlines()]
        return self._lines.pop(0) if self._lines else ""

    @property
    def interactive(self) -> bool:
        return not self.from_stdin and self._stdin.isatty()

    def secret(self, prompt: str, *, what: str) -> str:
        if self.from_stdin:
            value = self._next_line()
        elif self.interactive:
            value = getpass.getpass(prompt)
        else:
            raise CliError(
                f"no terminal to ask for {what}: give it on standard input with --password-stdin",
                exit_code=2,
            )
        if not value:
            raise CliError(f"{what} is required", exit_code=2)
        return value

    def text(self, prompt: str) -> str:
        """A visible answer (a username, a code); '' when there is none."""
        if self.from_stdin:
            return self._next_line().strip()
        if self.interactive:
            print(prompt, end="", file=sys.stderr, flush=True)
            return sys.stdin.readline().strip()
        return ""


def _username(args: argparse.Namespace, answers: Answers) -> str:
    if args.username:
        return str(args.username).strip()
    stored = SessionStore.of(connect.settings()).load()
    if stored is not None:
        return stored.username
    if answers.interactive:
        name = answers.text("username: ")
        if name:
            return name
    raise CliError("--username is required (your username or e-mail address)", exit_code=2)


def _stub(channel: grpc.aio.Channel) -> network_pb2_grpc.NetworkServiceStub:
    return network_pb2_grpc.NetworkServiceStub(channel)


class Refused(CliError):
    """The network service refused a sign-in call (`code` says how)."""

    def __init__(self, message: str, code: grpc.StatusCode, *, exit_code: int = 1) -> None:
        super().__init__(message, exit_code=exit_code)
        self.code = code


async def _with_code(
    answers: Answers,
    code: str,
    call: Callable[[str], Awaitable[network_pb2.SignedIn]],
) -> network_pb2.SignedIn:
    """Run `call(code)`; refused without a code on a terminal, ask for one
    and try once more (the service says only "refused", whatever was wrong)."""
    code = code.strip() or (answers.text("") if answers.from_stdin else "")
    try:
        return await call(code)
    except Refused as exc:
        if code or exc.code != grpc.StatusCode.UNAUTHENTICATED or not answers.interactive:
            raise
    code = answers.text(ASK_CODE)
    if not code:
        raise CliError("sign-in refused: check the login, the password and the code")
    return await call(code)


async def _network_call(call: Callable[[], Awaitable[Any]]) -> Any:
    """A call that needs no bearer token; errors as one line."""
    try:
        return await call()
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise CliError(
                "the network service is not reachable: is the stack running? (`masar up`)"
            ) from None
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise Refused(exc.details() or "sign-in refused", code) from None
        exit_code = 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
        raise Refused(
            f"network: {code.name.lower()}: {exc.details()}", code, exit_code=exit_code
        ) from None


def _store(signed_in: network_pb2.SignedIn, username: str) -> Session:
    cli = connect.settings()
    session = from_signed_in(
        signed_in, username=username, network_addr=cli.common.service_addrs["network"]
    )
    SessionStore.of(cli).save(session)
    return session


def _report(out: Output, session: Session, what: str) -> int:
    if out.json_mode:
        out.document(session.public())
        return 0
    org = session.organisation_id or "no organisation"
    region = f", {session.region}" if session.region else ""
    out.line(
        f"{what} as {session.username} ({session.role}, {org}{region}); "
        f"session until {when(session.refresh_token_expires_at)}"
    )
    out.line("  every command now acts as you; `masar logout` ends it here")
    return 0


async def run_login(args: argparse.Namespace, out: Output) -> int:
    answers = Answers(from_stdin=args.password_stdin)
    username = _username(args, answers)
    password = answers.secret("password: ", what="the password")
    common = connect.settings().common
    address = common.service_addrs["network"]
    async with aio_channel(address, tls=common.tls) as channel:
        stub = _stub(channel)

        async def sign_in(code: str) -> network_pb2.SignedIn:
            request = network_pb2.SignInRequest(login=username, password=password, totp_code=code)
            try:
                reply = await _network_call(lambda: stub.SignIn(request))
            except Refused as exc:
                if exc.code == grpc.StatusCode.FAILED_PRECONDITION:
                    raise CliError(
                        "your password is a first (one-time) password: choose your own with "
                        f"`masar password change --username {username}`, which signs you in"
                    ) from None
                raise
            signed_in: network_pb2.SignedIn = reply.signed_in
            return signed_in

        signed_in = await _with_code(answers, args.totp_code, sign_in)
    return _report(out, _store(signed_in, username), "signed in")


async def run_password_change(args: argparse.Namespace, out: Output) -> int:
    answers = Answers(from_stdin=args.password_stdin)
    username = _username(args, answers)
    current = answers.secret("current (or first) password: ", what="the current password")
    new = answers.secret(f"new password ({MIN_PASSWORD}+ characters): ", what="a new password")
    if (
        answers.interactive
        and answers.secret("new password again: ", what="the new password") != new
    ):
        raise CliError("the two new passwords differ", exit_code=2)
    common = connect.settings().common
    address = common.service_addrs["network"]
    async with aio_channel(address, tls=common.tls) as channel:
        stub = _stub(channel)

        async def change(code: str) -> network_pb2.SignedIn:
            request = network_pb2.ChangePasswordRequest(
                login=username, current_password=current, new_password=new, totp_code=code
            )
            reply = await _network_call(lambda: stub.ChangePassword(request))
            signed_in: network_pb2.SignedIn = reply.signed_in
            return signed_in

        signed_in = await _with_code(answers, args.totp_code, change)
    return _report(out, _store(signed_in, username), "password changed; signed in")


async def _sign_out(session: Session) -> bool:
    """End the session at the network service (its tokens revoked); False if
    the service could not be told (it ends anyway when the tokens expire)."""
    common = connect.settings().common
    async with aio_channel(session.network_addr, tls=common.tls) as channel:
        try:
            await identity_pb2_grpc.IdentityServiceStub(channel).SignOut(
                identity_pb2.SignOutRequest(refresh_token=session.refresh_token),
                metadata=((METADATA_KEY, f"Bearer {session.access_token}"),),
                timeout=10.0,
            )
        except grpc.aio.AioRpcError:
            return False
    return True


async def run_logout(args: argparse.Namespace, out: Output) -> int:
    cli = connect.settings()
    store = SessionStore.of(cli)
    session = store.load()
    revoked = await _sign_out(session) if session is not None else False
    removed = store.remove()
    doc = {
        "signed_out": removed,
        "username": session.username if session else None,
        "revoked": revoked,
    }
    if out.json_mode:
        out.document(doc)
    elif removed:
        out.line(f"signed out{f' ({session.username})' if session else ''}: session removed")
    else:
        out.line("no one was signed in")
    return 0


async def run_whoami(args: argparse.Namespace, out: Output) -> int:
    cli = connect.settings()
    session = current_session(cli)
    if cli.token is not None:
        doc: dict[str, Any] = {"acts_as": "MASAR_TOKEN"}
    elif session is not None:
        doc = {"acts_as": "signed_in", **session.public()}
    else:
        doc = {"acts_as": "local_stack", "data_dir": str(cli.common.data_dir.resolve())}
    if out.json_mode:
        out.document(doc)
    elif session is not None and cli.token is None:
        out.line(
            f"{session.username} ({session.role}, {session.organisation_id}, {session.region}); "
            f"session until {when(session.refresh_token_expires_at)}"
        )
    elif cli.token is not None:
        out.line("the token in MASAR_TOKEN")
    else:
        out.line(
            "no one is signed in: on the local stack each command acts as the role it stands "
            "for (`masar login` to act as yourself)"
        )
    return 0
