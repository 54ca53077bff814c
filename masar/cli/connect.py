"""How the CLI reaches the stack: the services' gRPC APIs (never Temporal:
journeys through intake's JourneyService), with one clear line when
something is not running.

Every gRPC call carries a bearer token, the first of:
1. MASAR_TOKEN, when set: that token for every command;
2. the signed-in person's (`masar login`; masar.cli.session), renewed with
   its refresh token when it has expired: every command acts as her;
3. the local development shortcut, for the local stack only: short-lived
   tokens the network service issues to the stack's bootstrap client
   (`IdentityService.IssueClientToken`, asked with the client key `masar up`
   creates in $MASAR_DATA_DIR/keys/cli/client.json) for the role the
   command stands for — an intake officer (of the local stack's development
   organisation) for `case open`, a coordinator of each region for
   `providers`, the staff of the organisation a referral is addressed to for
   `referral ...`, a network administrator for `org ...`. `masar seed` always
   uses it (`local_token`): it bootstraps the network. The CLI holds no
   token-signing key (a process given MASAR_TOKEN_SIGNING_KEY — tests —
   signs them itself).
The CLI never creates a key: a data dir that holds no running stack's keys
is one line saying so (`NoLocalStack`), and how to sign in instead.
Channels use TLS when the settings say so (MASAR_TLS, MASAR_TLS_CA_FILE, ...).

A command's settings are read from the environment once, by `masar.cli.main`
(`configured`); `settings()` returns them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import grpc

from masar.cli.output import CliError
from masar.cli.session import signed_in_token
from masar.contract import ServiceName
from masar.platform.channels import (
    MintedToken,
    NetworkIssuedToken,
    StaticToken,
    TokenRequest,
    TokenSource,
    TokenUnavailable,
    aio_channel,
    bearer_interceptors,
)
from masar.platform.clients import ClientKey
from masar.platform.identity import ISSUER_FILE, Role, TokenIssuer, TokenVerifier
from masar.platform.settings import CliSettings, CommonSettings, SettingsError

T = TypeVar("T")

_configured: CliSettings | None = None


@contextlib.contextmanager
def configured(cli: CliSettings) -> Iterator[CliSettings]:
    """Run one command with `cli` as its settings."""
    global _configured
    previous, _configured = _configured, cli
    try:
        yield cli
    finally:
        _configured = previous


def settings() -> CliSettings:
    """This command's settings (read here when a command runs outside `main`)."""
    return _configured if _configured is not None else CliSettings.from_env()


class NoLocalStack(CliError):
    """The data dir holds no running stack's keys, and the CLI creates none."""

    def __init__(self, data_dir: Path, missing: str, alternative: str) -> None:
        instead = alternative if " " in alternative else f"set {alternative}"
        super().__init__(
            f"no local stack found in {data_dir.resolve()} (it has no {missing}): "
            "point MASAR_DATA_DIR at the data directory of a running `masar up`, "
            f"or {instead}"
        )


# What a command without the local stack's keys can do instead.
SIGN_IN_INSTEAD = "sign in with `masar login` (or set MASAR_TOKEN)"
NOT_LOCAL = (
    "this is not the local stack (MASAR_TOKEN_PUBLIC_KEY is set): sign in with "
    "`masar login` (or set MASAR_TOKEN to your own token)"
)


def local_verifier(cli: CliSettings, *, alternative: str = SIGN_IN_INSTEAD) -> TokenVerifier:
    """The token issuer's public keys: MASAR_TOKEN_PUBLIC_KEY, else the local
    stack's public key file, which must exist (without it, the error names
    `alternative`, what would do instead)."""
    keys = cli.key_settings
    configured = keys.token_public_keys or keys.token_signing_key
    if not configured and not keys.token_public_path.is_file():
        raise NoLocalStack(cli.common.data_dir, ISSUER_FILE, alternative)
    return TokenVerifier.from_keys(keys)


def local_client(cli: CliSettings, *, alternative: str = SIGN_IN_INSTEAD) -> ClientKey:
    """The local stack's bootstrap client key (MASAR_CLIENT_KEY, else the
    file `masar up` creates), which must exist."""
    keys = cli.key_settings
    if not keys.client_key:
        if keys.token_public_keys:
            raise CliError(NOT_LOCAL)
        path = keys.client_key_path
        if not path.is_file():
            relative = path.relative_to(cli.common.data_dir)
            raise NoLocalStack(cli.common.data_dir, str(relative), alternative)
    try:
        return ClientKey.from_keys(keys)
    except SettingsError as exc:
        raise CliError(f"cannot use the local stack's client key: {exc}") from None


class LocalShortcut(NetworkIssuedToken):
    """Tokens the network service issues to the local stack's bootstrap
    client; a refusal or an unreachable network is one line."""

    def token(self) -> str:
        try:
            return super().token()
        except TokenUnavailable as exc:
            raise CliError(f"no token for the local stack's shortcut: {exc}") from None

    async def token_async(self) -> str:
        try:
            return await super().token_async()
        except TokenUnavailable as exc:
            raise CliError(f"no token for the local stack's shortcut: {exc}") from None


def check_case_id(case_id: str) -> str:
    if not case_id or not all(c.isalnum() or c in "-_" for c in case_id) or len(case_id) > 64:
        raise CliError("CASE_ID is malformed", exit_code=2)
    return case_id


CLI_TOKEN_TTL = timedelta(minutes=15)


# The local stack's development organisation: the shortcut's intake officer
# acts for it (a token must name an organisation); no such organisation is
# in the network.
LOCAL_ORGANISATION = "org-000000000000"


@dataclass(frozen=True)
class Identity:
    """Who a command acts as on the local stack (without MASAR_TOKEN)."""

    role: Role
    org: str = ""
    region: str = ""


INTAKE_OFFICER = Identity(Role.INTAKE_OFFICER, org=LOCAL_ORGANISATION)


def token_source(identity: Identity, cli: CliSettings | None = None) -> TokenSource:
    """MASAR_TOKEN if set; else short-lived tokens for `identity`, issued by
    the local stack's network service (the development shortcut)."""
    cli = cli or settings()
    if cli.token is not None:
        return StaticToken(cli.token)
    return local_token(identity, cli)


def local_token(identity: Identity, cli: CliSettings | None = None) -> TokenSource:
    """The development shortcut alone — whoever is signed in and whatever
    MASAR_TOKEN says: `identity`'s tokens, issued by the local stack's
    network service to its bootstrap client (for `masar seed`, which
    bootstraps the network); signed here only by a process given
    MASAR_TOKEN_SIGNING_KEY (tests)."""
    cli = cli or settings()
    subject = f"cli-{identity.role.value.replace(':', '-')}"
    if cli.token_signing_key:
        return MintedToken(
            TokenIssuer.from_b64(cli.token_signing_key),
            role=identity.role,
            subject=subject,
            org=identity.org,
            region=identity.region,
            ttl=CLI_TOKEN_TTL,
        )
    return LocalShortcut(
        cli.common.service_addrs["network"],
        local_client(cli),
        TokenRequest(
            role=identity.role.value,
            org=identity.org,
            region=identity.region,
            subject=subject,
            ttl=CLI_TOKEN_TTL,
        ),
        tls=cli.common.tls,
    )


def own_token(cli: CliSettings | None = None) -> TokenSource | None:
    """The person's own identity, when she gave one: MASAR_TOKEN, else her
    signed-in session (renewed if needed). None: the development shortcut."""
    cli = cli or settings()
    if cli.token is not None:
        return StaticToken(cli.token)
    return signed_in_token(cli)


def acting_token(identity: Identity, cli: CliSettings | None = None) -> TokenSource:
    """Who a command acts as: the person's own identity, else (local stack)
    `identity`, the role the command stands for."""
    cli = cli or settings()
    return own_token(cli) or token_source(identity, cli)


@contextlib.asynccontextmanager
async def channel(
    service: ServiceName,
    identity: Identity,
    common: CommonSettings | None = None,
    *,
    source: TokenSource | None = None,
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to `service` whose calls carry the person's own token, else
    (the local stack's shortcut) `identity`'s; `source` overrides both."""
    cli = settings()
    common = common or cli.common
    interceptors = bearer_interceptors(source or acting_token(identity, cli))
    async with aio_channel(
        common.service_addrs[service], tls=common.tls, interceptors=interceptors
    ) as chan:
        yield chan


async def rpc(service: ServiceName, call: Callable[[], Awaitable[T]]) -> T:
    """Run one RPC; map its status to a one-line error naming what went wrong."""
    try:
        return await call()
    except grpc.aio.AioRpcError as exc:
        raise rpc_error(service, exc) from None


def rpc_error(service: ServiceName, exc: grpc.aio.AioRpcError) -> CliError:
    """A refused or failed call as one line."""
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return CliError(
            f"the {service} service is not reachable: is the stack running? (`masar up`)"
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return CliError(f"{service}: {code.name.lower()}: {exc.details()} ({_who_acts()})")
    exit_code = 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1
    return CliError(f"{service}: {code.name.lower()}: {exc.details()}", exit_code=exit_code)


def _who_acts() -> str:
    """Whose token a refused call carried, for the one-line error."""
    cli = settings()
    if cli.token is not None:
        return "MASAR_TOKEN must be a valid token of a role allowed to do this"
    from masar.cli.session import current_session

    session = current_session(cli)
    if session is not None:
        return (
            f"signed in as {session.username}, {session.role} of {session.organisation_id}: "
            "`masar logout` to act as the local stack's roles"
        )
    return "the local stack's development identity; sign in with `masar login` to act as yourself"
