"""Generated requests to every RPC of the four services (hypothesis).

Each request is built from the RPC's protobuf descriptor with random fields
(see tests.faults.protogen), sent with a token of a role the method allows
(sometimes none, sometimes a forged one). Whatever the request, the answer is
a deliberate status — never INTERNAL, UNKNOWN, or a dropped connection — and
a refused request leaves every table of the service's database as it was.

The services run in-process (masar.platform.process.start_sector on free ports, their
own SQLite databases) on an event loop in a background thread, against a dev
server of their own; the test calls them with a plain synchronous channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.contract import Sector, ServiceName
from masar.platform.access import AccessPolicy
from masar.platform.identity import ORG_SCOPED_ROLES, Role, TokenIssuer
from masar.platform.process import SectorProcess, start_sector
from masar.platform.settings import ServiceSettings
from masar.referral.consent import issue_consent_proof
from masar.v1 import common_pb2, employment_pb2, intake_pb2, legal_pb2, shelter_pb2
from services.employment import app as employment_app
from services.intake import app as intake_app
from services.legal import app as legal_app
from services.shelter import app as shelter_app
from tests.conftest import DevServer, free_port
from tests.faults.protogen import messages
from tests.support_auth import TEST_ISSUER, issuer_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

T = TypeVar("T")

EXAMPLES_PER_RPC = 25
REGION = "fes-meknes"
# The organisations of the network running the seeded shelter, lawyer and programme.
ORGANISATIONS = ("org-ba0000000001", "org-ba0000000002", "org-ba0000000003")
APPS: dict[ServiceName, Any] = {
    "intake": intake_app,
    "shelter": shelter_app,
    "legal": legal_app,
    "employment": employment_app,
}
DESCRIPTORS: dict[ServiceName, ServiceDescriptor] = {
    "intake": intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],
    "shelter": shelter_pb2.DESCRIPTOR.services_by_name["ShelterService"],
    "legal": legal_pb2.DESCRIPTOR.services_by_name["LegalAidService"],
    "employment": employment_pb2.DESCRIPTOR.services_by_name["EmploymentService"],
}
AUDIT_TABLES = ("audit_log", "audit_head")
# Statuses that say the server broke, not that the caller was refused.
NOT_DELIBERATE = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,  # a dropped connection
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.CANCELLED,
}


@dataclass
class Services:
    """The four services on a loop in a thread, and what the strategies draw from."""

    data_dir: Path
    issuer: TokenIssuer
    loop: asyncio.AbstractEventLoop
    processes: dict[ServiceName, SectorProcess] = field(default_factory=dict)
    channels: dict[ServiceName, grpc.Channel] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)  # ids, slugs and keys that exist
    orgs: list[str] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def counts(self, name: ServiceName) -> dict[str, int]:
        path = self.data_dir / f"{name}.db"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = [
                r[0]
                for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if r[0] != "alembic_version"
            ]
            return {t: int(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}

    def call(
        self,
        name: ServiceName,
        method: MethodDescriptor,
        request: Any,
        metadata: tuple[tuple[str, str], ...],
    ) -> grpc.StatusCode:
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc = self.channels[name].unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            rpc(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def policy(self, name: ServiceName) -> AccessPolicy:
        return AccessPolicy.from_services(self.processes[name].components.grpc_services)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _start(services: Services, temporal: str) -> None:
    addresses = {n: f"127.0.0.1:{free_port()}" for n in APPS}
    env = {
        "MASAR_DATA_DIR": str(services.data_dir),
        "MASAR_TEMPORAL_ADDRESS": temporal,
        **{f"MASAR_{n.upper()}_ADDR": a for n, a in addresses.items()},
    }
    for name, app in APPS.items():
        settings_ = ServiceSettings.from_env(name, env)
        services.processes[name] = await start_sector(
            settings_,
            app.build_components,
            app.MIGRATIONS_DIR,
            run_worker=False,
            verifier=services.issuer.verifier(),
        )


async def _stop(services: Services) -> None:
    for process in services.processes.values():
        await process.stop()


def _seed(services: Services) -> None:
    """A case, and in each sector a provider and a PENDING referral, so that
    generated ids can name things that exist."""
    issuer = services.issuer
    coordinator = bearer(issuer.issue(role=Role.COORDINATOR, region=REGION))

    def unary(name: ServiceName, rpc: str, request: Any, metadata: Any) -> Any:
        method = DESCRIPTORS[name].methods_by_name[rpc]
        response_class = message_factory.GetMessageClass(method.output_type)
        call = services.channels[name].unary_unary(
            f"/{DESCRIPTORS[name].full_name}/{rpc}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return call(request, metadata=metadata, timeout=30)

    from bench.journeys import register_request

    registration = register_request(region=REGION)
    case_id = unary(
        "intake",
        "RegisterCase",
        registration,
        bearer(issuer.issue(role=Role.INTAKE_OFFICER, region=REGION)),
    ).case.summary.case_id
    shelter_id = unary(
        "shelter",
        "CreateShelter",
        shelter_pb2.CreateShelterRequest(
            name="Dar",
            region=REGION,
            capacity=4,
            accepts_children=True,
            address="a",
            idempotency_key="s1",
            organisation_id=ORGANISATIONS[0],
        ),
        coordinator,
    ).shelter.shelter_id
    provider_id = unary(
        "legal",
        "CreateProvider",
        legal_pb2.CreateLegalProviderRequest(
            kind=legal_pb2.LEGAL_PROVIDER_KIND_LAWYER,
            name="Maître",
            region=REGION,
            languages=["ar"],
            matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER],
            idempotency_key="l1",
            organisation_id=ORGANISATIONS[1],
        ),
        coordinator,
    ).provider.provider_id
    programme = employment_pb2.CreateProgrammeRequest(
        name="Couture",
        kind=employment_pb2.PROGRAMME_KIND_SEWING,
        region=REGION,
        seats=4,
        languages=["ar"],
        idempotency_key="e1",
        organisation_id=ORGANISATIONS[2],
    )
    programme.start_date.GetCurrentTime()
    programme_id = unary(
        "employment", "CreateProgramme", programme, coordinator
    ).programme.programme_id

    referral_ids = []
    for sector, rpc, request in (
        (
            Sector.SHELTER,
            "RequestPlacement",
            shelter_pb2.RequestPlacementRequest(needs=shelter_pb2.ShelterNeeds(household_size=1)),
        ),
        (
            Sector.LEGAL,
            "RequestLegalAid",
            legal_pb2.RequestLegalAidRequest(
                needs=legal_pb2.LegalNeeds(matters=[legal_pb2.LEGAL_MATTER_PROTECTION_ORDER])
            ),
        ),
        (
            Sector.EMPLOYMENT,
            "RequestEnrolment",
            employment_pb2.RequestEnrolmentRequest(needs=employment_pb2.EmploymentNeeds()),
        ),
    ):
        proof, _ = issue_consent_proof(issuer, case_id=case_id, sector=sector)
        request.case_id = case_id
        request.risk = common_pb2.RISK_LEVEL_HIGH
        request.region = REGION
        request.idempotency_key = f"seed-{sector.value}"
        request.consent_proof = proof
        reply = unary(
            sector.value,
            rpc,
            request,
            bearer(issuer.issue(role=f"service:{sector.value}")),
        )
        referral_ids.append(reply.referral.referral_id)
        services.pool.append(proof)
    # Staff tokens name an organisation: those running the providers, and
    # (out of scope everywhere) the providers' own ids.
    services.orgs = [*ORGANISATIONS, shelter_id, provider_id, programme_id]
    services.pool += [
        case_id,
        REGION,
        "oriental",
        "sewing",
        "ar",
        "k1",
        *services.orgs,
        *referral_ids,
    ]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    # The suite's key ring (tests/conftest.py installs it before every test):
    # the services encrypt their PII columns with it across tests.
    from masar.platform.crypto import Keyring, install_keyring
    from tests import conftest

    if conftest._TEST_KEYRING is None:
        conftest._TEST_KEYRING = Keyring.generate("test")
    install_keyring(conftest._TEST_KEYRING)
    temporal = DevServer(free_port())
    data_dir = tmp_path_factory.mktemp("bad-input")
    # The suite's token issuer: the services verify tokens and consent proofs
    # with its key (read from the environment when they are built).
    issuer = TEST_ISSUER
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="services", daemon=True)
    thread.start()
    running = Services(data_dir=data_dir, issuer=issuer, loop=loop)
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in issuer_env().items():
                env.setenv(key, value)
            running.run(_start(running, temporal.address))
        for name, process in running.processes.items():
            running.channels[name] = grpc.insecure_channel(f"127.0.0.1:{process.port}")
        _seed(running)
        yield running
    finally:
        for channel in running.channels.values():
            channel.close()
        with contextlib.suppress(Exception):
            running.run(_stop(running))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        temporal.stop()


def tokens(services: Services, roles: frozenset[str] | None) -> st.SearchStrategy[Any]:
    """Metadata: usually a token of an allowed role (any org and region from
    the pool), sometimes another role, none, or a forged one."""

    def issue(role: str, org: str, region: str) -> tuple[tuple[str, str], ...]:
        parsed = Role(role)
        if parsed not in ORG_SCOPED_ROLES:
            org = ""
        if parsed is Role.COORDINATOR and not region:
            region = REGION
        return bearer(services.issuer.issue(role=parsed, org=org, region=region))

    allowed = sorted(r for r in (roles or ()) if r != "*") or [r.value for r in Role]
    permitted = st.builds(
        issue,
        st.sampled_from(allowed),
        st.sampled_from(services.orgs),
        st.sampled_from([REGION, REGION, "oriental", ""]),
    )
    anyone = st.builds(
        issue,
        st.sampled_from([r.value for r in Role]),
        st.sampled_from(services.orgs),
        st.sampled_from([REGION, ""]),
    )
    # Mostly a role the method allows, so that requests reach the handlers.
    return st.one_of(
        permitted,
        permitted,
        permitted,
        permitted,
        anyone,
        st.just(()),
        st.just(bearer("e30.e30.x")),
    )


CASES = [(name, method.name) for name, desc in DESCRIPTORS.items() for method in desc.methods]


@pytest.mark.parametrize(("name", "rpc"), CASES, ids=[f"{n}.{r}" for n, r in CASES])
def test_generated_requests_get_a_deliberate_answer_and_leave_nothing_partial(
    services: Services, name: ServiceName, rpc: str
) -> None:
    method = DESCRIPTORS[name].methods_by_name[rpc]
    roles = services.policy(name).roles_for(f"/{DESCRIPTORS[name].full_name}/{rpc}")
    requests = messages(method.input_type, pool=services.pool)

    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests, metadata=tokens(services, roles))
    def check(request: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        before = services.counts(name)
        code = services.call(name, method, request, metadata)
        assert code not in NOT_DELIBERATE, f"{name}.{rpc} answered {code.name}"
        if code != grpc.StatusCode.OK:
            after = services.counts(name)
            # A refused read of a case is audited on purpose (who tried, when);
            # that entry is the record of the refusal, not a half-done write.
            if code == grpc.StatusCode.PERMISSION_DENIED:
                for table in AUDIT_TABLES:
                    before.pop(table, None)
                    after.pop(table, None)
            assert after == before, f"{name}.{rpc} refused ({code.name}) but wrote"

    check()
