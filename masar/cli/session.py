"""The signed-in person's session: what `masar login` stores and every
command then acts with.

The session — the access token the network service issued at sign-in, its
refresh token, and who they are for — is one file, `session.json`, in the
user's configuration directory (`$XDG_CONFIG_HOME/masar/`, else
`~/.config/masar/`), readable by her alone (mode 0600, directory 0700). It
belongs to the network service it came from (MASAR_NETWORK_ADDR): pointed at
another deployment, the CLI ignores it. An access token that has expired (or
is about to) is renewed with the refresh token before it is presented, and
the renewed pair replaces the old one (each refresh token works once); a
refresh refused — the account disabled, its organisation suspended, the
session over — removes the file and says to sign in again.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from masar.cli.output import CliError
from masar.platform.channels import sync_channel
from masar.platform.settings import CliSettings
from masar.v1 import network_pb2, network_pb2_grpc

SESSION_FILE = "session.json"
# Renew an access token this long before it expires (a command's calls, the
# clocks of two machines).
RENEW_BEFORE = timedelta(seconds=60)
REFRESH_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class Session:
    network_addr: str
    account_id: str
    username: str
    role: str
    organisation_id: str
    region: str
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    refresh_token_expires_at: datetime

    def fresh(self, now: datetime) -> bool:
        return now + RENEW_BEFORE < self.access_token_expires_at

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("access_token_expires_at", "refresh_token_expires_at"):
            doc[key] = doc[key].isoformat()
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Session:
        fields = dict(doc)
        for key in ("access_token_expires_at", "refresh_token_expires_at"):
            fields[key] = datetime.fromisoformat(fields[key])
        return cls(**fields)

    def public(self) -> dict[str, Any]:
        """Who is signed in and until when: no token."""
        return {
            "account_id": self.account_id,
            "username": self.username,
            "role": self.role,
            "organisation_id": self.organisation_id,
            "region": self.region,
            "network": self.network_addr,
            "access_token_expires_at": self.access_token_expires_at,
            "session_expires_at": self.refresh_token_expires_at,
        }


def enum_code(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def from_signed_in(signed_in: network_pb2.SignedIn, *, username: str, network_addr: str) -> Session:
    return Session(
        network_addr=network_addr,
        account_id=signed_in.account_id,
        username=username,
        role=enum_code(network_pb2.AccountRole.Name(signed_in.role), "ACCOUNT_ROLE_"),
        organisation_id=signed_in.organisation_id,
        region=signed_in.region,
        access_token=signed_in.access_token,
        access_token_expires_at=signed_in.access_token_expires_at.ToDatetime(tzinfo=UTC),
        refresh_token=signed_in.refresh_token,
        refresh_token_expires_at=signed_in.refresh_token_expires_at.ToDatetime(tzinfo=UTC),
    )


class SessionStore:
    """The session file of one user (her configuration directory)."""

    def __init__(self, config_dir: Path) -> None:
        self.dir = config_dir.expanduser()
        self.path = self.dir / SESSION_FILE

    @classmethod
    def of(cls, cli: CliSettings) -> SessionStore:
        return cls(cli.config_dir)

    def load(self) -> Session | None:
        """The stored session; None when there is none (or it is unreadable,
        e.g. written by another version: then signing in again replaces it)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CliError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return Session.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError):
            return None

    def save(self, session: Session) -> None:
        """Written whole or not at all, readable by the user alone."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            temporary = self.dir / f".{SESSION_FILE}.{os.getpid()}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(session.to_json(), f, indent=2)
            os.chmod(temporary, stat.S_IRUSR | stat.S_IWUSR)
            os.replace(temporary, self.path)
        except OSError as exc:
            raise CliError(f"cannot store the session in {self.dir}: {exc.strerror}") from None

    def remove(self) -> bool:
        """Forget the session; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CliError(f"cannot remove {self.path}: {exc.strerror}") from None
        return True


def current_session(cli: CliSettings) -> Session | None:
    """The signed-in session for the network service this command talks to."""
    session = SessionStore.of(cli).load()
    if session is None or session.network_addr != cli.common.service_addrs["network"]:
        return None
    return session


SESSION_ENDED = "your session has ended ({why}): sign in again with `masar login`"


def refreshed(cli: CliSettings, session: Session) -> Session:
    """The session with a new access token (RefreshToken), stored; a refusal
    removes the stored session and is one line saying to sign in again."""
    store = SessionStore.of(cli)
    if session.refresh_token_expires_at <= datetime.now(UTC):
        store.remove()
        raise CliError(SESSION_ENDED.format(why="it expired"))
    address = session.network_addr
    try:
        with sync_channel(address, tls=cli.common.tls) as channel:
            reply = network_pb2_grpc.NetworkServiceStub(channel).RefreshToken(
                network_pb2.RefreshTokenRequest(refresh_token=session.refresh_token),
                timeout=REFRESH_TIMEOUT,
            )
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if code == grpc.StatusCode.UNAUTHENTICATED:
            store.remove()
            raise CliError(SESSION_ENDED.format(why="refused by the network service")) from None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise CliError(
                f"the network service at {address} is not reachable to renew your session: "
                "is the stack running? (`masar up`)"
            ) from None
        name = code.name.lower() if code is not None else "error"
        raise CliError(f"network: {name}: the session could not be renewed") from None
    renewed = from_signed_in(reply.signed_in, username=session.username, network_addr=address)
    store.save(renewed)
    return renewed


class SessionToken:
    """The signed-in person's access token (a `TokenSource`), renewed with
    the refresh token whenever it has expired or is about to."""

    def __init__(self, cli: CliSettings, session: Session) -> None:
        self._cli = cli
        self._session = session
        self._lock = threading.Lock()

    @property
    def session(self) -> Session:
        return self._session

    def token(self) -> str:
        with self._lock:
            if not self._session.fresh(datetime.now(UTC)):
                self._session = refreshed(self._cli, self._session)
            return self._session.access_token

    async def token_async(self) -> str:
        """The same, renewing (a blocking call) off the event loop."""
        if self._session.fresh(datetime.now(UTC)):
            return self._session.access_token
        return await asyncio.to_thread(self.token)


def signed_in_token(cli: CliSettings) -> SessionToken | None:
    """The signed-in person's token source for this command, renewed at once
    if needed (so an ended session is said before anything else runs)."""
    session = current_session(cli)
    if session is None:
        return None
    source = SessionToken(cli, session)
    source.token()
    return source
