"""Helpers for the network service's tests: organisations and accounts made
through the API, as their administrators would."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import grpc
import pyotp
from sqlalchemy import text

from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from masar.v1 import network_pb2_grpc
from services.network.credentials import totp_code
from tests.services.harness import RunningSector
from tests.support_auth import token_for

FES = "fes-meknes"
RABAT = "rabat-sale-kenitra"
NEW_PASSWORD = "correct horse battery staple"


def stub_as(
    running: RunningSector, role: Role, org: str = "", region: str = "", subject: str | None = None
) -> network_pb2_grpc.NetworkServiceStub:
    if subject:
        token = token_for(role, org, region, subject=subject)
        return network_pb2_grpc.NetworkServiceStub(running.channel_as(token=token))
    return network_pb2_grpc.NetworkServiceStub(running.channel_as(role, org, region))


def admin(running: RunningSector) -> network_pb2_grpc.NetworkServiceStub:
    return stub_as(running, Role.NETWORK_ADMIN)


def anonymous(running: RunningSector) -> network_pb2_grpc.NetworkServiceStub:
    """No bearer token: how a person reaches SignIn."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.process.port}")
    running.extra_channels.append(channel)
    return network_pb2_grpc.NetworkServiceStub(channel)


def from_address(address: str) -> tuple[tuple[str, str]]:
    """Metadata of a call forwarded by the console for a person at `address`."""
    return (("x-forwarded-for", address),)


async def create_org(
    stub,
    *,
    region: str = FES,
    kind=pb.ORGANISATION_KIND_ASSOCIATION,
    sectors=(pb.SERVED_SECTOR_CASE_MANAGEMENT,),
    name: str = "Association Amal",
) -> pb.Organisation:
    reply = await stub.CreateOrganisation(
        pb.CreateOrganisationRequest(
            name=name,
            kind=kind,
            region=region,
            languages=[pb.SPOKEN_LANGUAGE_ARABIC, pb.SPOKEN_LANGUAGE_FRENCH],
            sectors=list(sectors),
            idempotency_key=secrets.token_hex(8),
        )
    )
    return reply.organisation


@dataclass
class Person:
    account: pb.Account
    username: str
    password: str
    totp_secret: str | None

    @property
    def account_id(self) -> str:
        return self.account.account_id

    def code(self, clock) -> str:
        assert self.totp_secret is not None
        return totp_code(self.totp_secret, clock())


async def create_account(
    stub, org: pb.Organisation, role=pb.ACCOUNT_ROLE_INTAKE_OFFICER, username: str | None = None
) -> Person:
    username = username or f"staff.{secrets.token_hex(4)}"
    reply = await stub.CreateAccount(
        pb.CreateAccountRequest(
            username=username,
            display_name="Khadija Bennani",
            role=role,
            organisation_id=org.organisation_id,
            email=f"{username}@example.org",
            mobile="+212612345678",
            language=pb.PREFERRED_LANGUAGE_FR,
            idempotency_key=secrets.token_hex(8),
        )
    )
    secret = pyotp.parse_uri(reply.totp_uri).secret if reply.totp_uri else None
    return Person(reply.account, username, reply.one_time_password, secret)


async def activate(anon, person: Person, clock=None, *, metadata=None) -> pb.SignedIn:
    """The first password changed for a chosen one (the person's first step)."""
    code = ""
    if person.totp_secret:
        clock.next_step()
        code = person.code(clock)
    reply = await anon.ChangePassword(
        pb.ChangePasswordRequest(
            login=person.username,
            current_password=person.password,
            new_password=NEW_PASSWORD,
            totp_code=code,
        ),
        metadata=metadata,
    )
    person.password = NEW_PASSWORD
    return reply.signed_in


async def sign_in(anon, person: Person, clock=None, *, password=None, metadata=None, code=None):
    if code is None and person.totp_secret:
        clock.next_step()
        code = person.code(clock)
    reply = await anon.SignIn(
        pb.SignInRequest(
            login=person.username,
            password=password if password is not None else person.password,
            totp_code=code or "",
        ),
        metadata=metadata,
    )
    return reply.signed_in


def audit_actions(running: RunningSector) -> list[tuple[str, str | None, str | None]]:
    with running.process.database.engine.connect() as conn:
        rows = conn.execute(text("SELECT action, target, reason FROM audit_log ORDER BY seq"))
        return [(r[0], r[1], r[2]) for r in rows]
