"""Generated requests to every RPC of the seven services (hypothesis).

Each request is built from the RPC's protobuf descriptor with random fields
(see tests.faults.protogen), sent with a token of a role the method allows
(sometimes none, one without its scope claims, another role's, or a forged
one). Whatever the request, the answer is a deliberate status — never
INTERNAL, UNKNOWN, or a dropped connection — and a refused request leaves
every table of the service's database as it was: every row, every column
(tests.faults.tables), so a refusal that rewrote an existing row is caught
even when no row count moves. The only writes a refusal may make are its own
record: entries appended to the audit log (and its head) when a caller is
refused, and the sign-in throttle's counters when credentials are refused.

The services (intake, shelter, legal, employment, health, psychosocial,
network) run in-process
(masar.platform.process.start_sector on free ports, their own SQLite
databases) on an event loop in a background thread, against a dev server of
their own; the test calls them with a plain synchronous channel. Their
background loops (outbox, audit anchoring, the network's notification
dispatcher) do not run, so any write seen between the two looks is the
request's. Every gRPC service the processes serve is covered but intake's
journey API (`EXCLUDED`): without a journey worker each accepted action would
wait for Temporal until its deadline; its refusals have tests of their own
(tests/services/intake/test_journey_api*.py, the role/scope walk).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
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
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from masar.contract import Sector, ServiceName
from masar.platform.access import AccessPolicy
from masar.platform.identity import (
    NO_TOKEN,
    ORG_REQUIRED_ROLES,
    ORG_SCOPED_ROLES,
    REGION_REQUIRED_ROLES,
    Role,
    TokenIssuer,
)
from masar.platform.process import ComponentsFactory, SectorProcess, start_sector
from masar.platform.settings import ServiceSettings
from masar.referral.consent import issue_consent_proof
from masar.v1 import (
    common_pb2,
    employment_pb2,
    health_pb2,
    identity_pb2,
    intake_pb2,
    journey_pb2,
    legal_pb2,
    network_pb2,
    psychosocial_pb2,
    shelter_pb2,
)
from services.employment import app as employment_app
from services.health import app as health_app
from services.intake import app as intake_app
from services.legal import app as legal_app
from services.network import app as network_app
from services.network.domain import ThrottlePolicy
from services.network.signin import SignInPolicy
from services.psychosocial import app as psychosocial_app
from services.shelter import app as shelter_app
from tests.conftest import DevServer, free_port
from tests.faults.protogen import messages
from tests.faults.tables import TableDump, changes
from tests.support_auth import TEST_ISSUER, issuer_env
from tests.support_network import CHEAP_PASSWORDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

T = TypeVar("T")

EXAMPLES_PER_RPC = 25
REGION = "fes-meknes"
# The organisations of the network running the seeded shelter, lawyer and programme.
ORGANISATIONS = ("org-ba0000000001", "org-ba0000000002", "org-ba0000000003")
# Which factory builds each service: the network's with cheap password hashes
# and no sign-in throttle (a throttled attempt waits, on purpose).
FACTORIES: dict[ServiceName, ComponentsFactory] = {
    "intake": intake_app.build_components,
    "shelter": shelter_app.build_components,
    "legal": legal_app.build_components,
    "employment": employment_app.build_components,
    "health": health_app.build_components,
    "psychosocial": psychosocial_app.build_components,
    "network": functools.partial(
        network_app.build_components,
        passwords=CHEAP_PASSWORDS,
        policy=SignInPolicy(throttle=ThrottlePolicy(free=1_000_000)),
    ),
}
MIGRATIONS: dict[ServiceName, Path] = {
    "intake": intake_app.MIGRATIONS_DIR,
    "shelter": shelter_app.MIGRATIONS_DIR,
    "legal": legal_app.MIGRATIONS_DIR,
    "employment": employment_app.MIGRATIONS_DIR,
    "health": health_app.MIGRATIONS_DIR,
    "psychosocial": psychosocial_app.MIGRATIONS_DIR,
    "network": network_app.MIGRATIONS_DIR,
}
DESCRIPTORS: dict[ServiceName, tuple[ServiceDescriptor, ...]] = {
    "intake": (intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],),
    "shelter": (shelter_pb2.DESCRIPTOR.services_by_name["ShelterService"],),
    "legal": (legal_pb2.DESCRIPTOR.services_by_name["LegalAidService"],),
    "employment": (employment_pb2.DESCRIPTOR.services_by_name["EmploymentService"],),
    "health": (health_pb2.DESCRIPTOR.services_by_name["HealthService"],),
    "psychosocial": (psychosocial_pb2.DESCRIPTOR.services_by_name["PsychosocialService"],),
    "network": (
        network_pb2.DESCRIPTOR.services_by_name["NetworkService"],
        identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    ),
}
EXCLUDED = frozenset({journey_pb2.DESCRIPTOR.services_by_name["JourneyService"].full_name})
# What a refusal may write, as its own record: the audit log gains entries
# (never loses or changes one), its head moves.
AUDIT_APPENDED, AUDIT_HEAD = "audit_log", "audit_head"
# Credentials refused at sign-in are counted (the throttle) and audited.
CREDENTIAL_RPCS = frozenset({"SignIn", "ChangePassword", "RefreshToken"})
THROTTLE_TABLE = "sign_in_failures"
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
# A server stream (a watch) still open after this long was accepted.
STREAM_WAIT = 0.5


@dataclass
class Services:
    """The services on a loop in a thread, and what the strategies draw from."""

    data_dir: Path
    issuer: TokenIssuer
    loop: asyncio.AbstractEventLoop
    processes: dict[ServiceName, SectorProcess] = field(default_factory=dict)
    channels: dict[ServiceName, grpc.Channel] = field(default_factory=dict)
    dumps: dict[ServiceName, TableDump] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)  # ids, slugs and keys that exist
    orgs: list[str] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(
        self,
        name: ServiceName,
        method: MethodDescriptor,
        request: Any,
        metadata: tuple[tuple[str, str], ...],
    ) -> grpc.StatusCode:
        response_class = message_factory.GetMessageClass(method.output_type)
        path = f"/{method.containing_service.full_name}/{method.name}"
        channel = self.channels[name]
        try:
            if method.server_streaming:
                stream = channel.unary_stream(
                    path,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=response_class.FromString,
                )(request, metadata=metadata, timeout=STREAM_WAIT)
                try:
                    next(stream, None)
                finally:
                    stream.cancel()
            else:
                channel.unary_unary(
                    path,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=response_class.FromString,
                )(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            if method.server_streaming and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return grpc.StatusCode.OK  # still watching: accepted
            return code
        return grpc.StatusCode.OK

    def policy(self, name: ServiceName) -> AccessPolicy:
        return AccessPolicy.from_services(self.processes[name].components.grpc_services)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def without_background(factory: ComponentsFactory) -> ComponentsFactory:
    """The service's components with none of its loops: what the test sees
    written between two looks is the request's doing."""

    def build(settings_: ServiceSettings, database: Any, connector: Any) -> Any:
        components = factory(settings_, database, connector)
        return dataclasses.replace(components, outbox=None, anchorer=None, background=[])

    return build


async def _start(services: Services, temporal: str) -> None:
    addresses = {n: f"127.0.0.1:{free_port()}" for n in FACTORIES}
    env = {
        "MASAR_DATA_DIR": str(services.data_dir),
        "MASAR_TEMPORAL_ADDRESS": temporal,
        **{f"MASAR_{n.upper()}_ADDR": a for n, a in addresses.items()},
    }
    for name, factory in FACTORIES.items():
        settings_ = ServiceSettings.from_env(name, env)
        services.processes[name] = await start_sector(
            settings_,
            without_background(factory),
            MIGRATIONS[name],
            run_worker=False,
            verifier=services.issuer.verifier(),
        )


async def _stop(services: Services) -> None:
    for process in services.processes.values():
        await process.stop()


def _seed(services: Services) -> None:
    """A case, in each sector a provider and a PENDING referral, in the
    network an organisation and an account, so that generated ids can name
    things that exist."""
    issuer = services.issuer
    coordinator = bearer(issuer.issue(role=Role.COORDINATOR, region=REGION))

    def unary(name: ServiceName, rpc: str, request: Any, metadata: Any) -> Any:
        desc = next(d for d in DESCRIPTORS[name] if rpc in d.methods_by_name)
        method = desc.methods_by_name[rpc]
        response_class = message_factory.GetMessageClass(method.output_type)
        call = services.channels[name].unary_unary(
            f"/{desc.full_name}/{rpc}",
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
        bearer(issuer.issue(role=Role.INTAKE_OFFICER, org=ORGANISATIONS[0], region=REGION)),
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
    care_unit_id = unary(
        "health",
        "CreateCareUnit",
        health_pb2.CreateCareUnitRequest(
            name="Unité intégrée",
            region=REGION,
            services=[health_pb2.CARE_SERVICE_PEP, health_pb2.CARE_SERVICE_CERTIFICATE],
            languages=["ar"],
            idempotency_key="h1",
            organisation_id=ORGANISATIONS[0],
        ),
        coordinator,
    ).care_unit.care_unit_id
    support_provider_id = unary(
        "psychosocial",
        "CreateSupportProvider",
        psychosocial_pb2.CreateSupportProviderRequest(
            name="Écoute",
            region=REGION,
            kinds=[psychosocial_pb2.SUPPORT_KIND_COUNSELLING],
            languages=["ar"],
            idempotency_key="p1",
            organisation_id=ORGANISATIONS[1],
        ),
        coordinator,
    ).provider.provider_id

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
        (
            Sector.HEALTH,
            "RequestMedicalCare",
            health_pb2.RequestMedicalCareRequest(needs=health_pb2.HealthNeeds()),
        ),
        (
            Sector.PSYCHOSOCIAL,
            "RequestSupport",
            psychosocial_pb2.RequestSupportRequest(needs=psychosocial_pb2.PsychosocialNeeds()),
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

    # Emergency grants asked for by a coordinator of another region: pending,
    # for the rules of approving, refusing and revoking to be reached.
    grant_ids = [
        unary(
            "intake",
            "OpenEmergencyGrant",
            intake_pb2.OpenEmergencyGrantRequest(
                case_id=case_id, reason=intake_pb2.EMERGENCY_REASON_IMMINENT_DANGER
            ),
            bearer(issuer.issue(role=Role.COORDINATOR, region="oriental", subject=subject)),
        ).grant.grant_id
        for subject in ("coordinator-oriental-1", "coordinator-oriental-2")
    ]

    admin = bearer(issuer.issue(role=Role.NETWORK_ADMIN))
    organisation = unary(
        "network",
        "CreateOrganisation",
        network_pb2.CreateOrganisationRequest(
            name="Association Amal",
            kind=network_pb2.ORGANISATION_KIND_ASSOCIATION,
            region=REGION,
            languages=[network_pb2.SPOKEN_LANGUAGE_ARABIC],
            sectors=[network_pb2.SERVED_SECTOR_CASE_MANAGEMENT],
            idempotency_key="n1",
        ),
        admin,
    ).organisation
    account = unary(
        "network",
        "CreateAccount",
        network_pb2.CreateAccountRequest(
            username="khadija.b",
            display_name="Khadija Bennani",
            role=network_pb2.ACCOUNT_ROLE_INTAKE_OFFICER,
            organisation_id=organisation.organisation_id,
            email="khadija.b@example.org",
            mobile="+212612345678",
            language=network_pb2.PREFERRED_LANGUAGE_FR,
            idempotency_key="n2",
        ),
        coordinator,
    )
    # Staff tokens name an organisation: those running the providers and the
    # network's, and (out of scope everywhere) the providers' own ids.
    services.orgs = [
        *ORGANISATIONS,
        organisation.organisation_id,
        shelter_id,
        provider_id,
        programme_id,
        care_unit_id,
        support_provider_id,
    ]
    services.pool += [
        case_id,
        REGION,
        "oriental",
        "sewing",
        "ar",
        "k1",
        *services.orgs,
        *referral_ids,
        *grant_ids,
        account.account.account_id,
        account.account.username,
        account.one_time_password,
        "service:intake",
        "intake",
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
            path = make_url(process.database.url).database
            running.dumps[name] = TableDump(
                create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
            )
        _seed(running)
        yield running
    finally:
        for channel in running.channels.values():
            channel.close()
        for dump in running.dumps.values():
            dump.engine.dispose()
        with contextlib.suppress(Exception):
            running.run(_stop(running))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        temporal.stop()


def tokens(services: Services, roles: frozenset[str] | None) -> st.SearchStrategy[Any]:
    """Metadata: usually a token of an allowed role with the scope claims it
    needs (any org and region from the pool), sometimes another role's, one
    without its scope claims, none, or a forged one."""

    def issue(role: str, org: str, region: str, *, scoped: bool) -> tuple[tuple[str, str], ...]:
        parsed = Role(role)
        if parsed in ORG_SCOPED_ROLES or (scoped and parsed in ORG_REQUIRED_ROLES):
            org = org or services.orgs[0]
        elif parsed not in ORG_REQUIRED_ROLES:
            org = ""
        if parsed in REGION_REQUIRED_ROLES and not region:
            region = REGION
        return bearer(services.issuer.issue(role=parsed, org=org, region=region))

    declared = roles or frozenset()
    if declared == {NO_TOKEN}:
        # Signing in and the like: no token is how it is called.
        permitted: st.SearchStrategy[Any] = st.just(())
    else:
        allowed = sorted(r for r in declared if r != "*") or [r.value for r in Role]
        permitted = st.builds(
            functools.partial(issue, scoped=True),
            st.sampled_from(allowed),
            st.sampled_from(services.orgs),
            st.sampled_from([REGION, REGION, "oriental", ""]),
        )
    anyone = st.builds(
        functools.partial(issue, scoped=False),
        st.sampled_from([r.value for r in Role]),
        st.sampled_from([*services.orgs, ""]),
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


def refusal_records(rpc: str, code: grpc.StatusCode) -> tuple[set[str], set[str]]:
    """(appendable, free) tables: what a refusal of `rpc` with `code` may
    write as its own record."""
    if rpc in CREDENTIAL_RPCS and code in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    ):
        return {AUDIT_APPENDED}, {AUDIT_HEAD, THROTTLE_TABLE}
    # A refused read of a case is audited on purpose (who tried, when): that
    # entry is the record of the refusal, not a half-done write.
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return {AUDIT_APPENDED}, {AUDIT_HEAD}
    return set(), set()


CASES = [
    (name, desc.full_name, method.name)
    for name, descs in DESCRIPTORS.items()
    for desc in descs
    for method in desc.methods
]


def test_every_service_the_processes_serve_is_covered(services: Services) -> None:
    for name, process in services.processes.items():
        served = {s.name for s in process.components.grpc_services}
        assert served - EXCLUDED == {d.full_name for d in DESCRIPTORS[name]}, name


@pytest.mark.parametrize(
    ("name", "service", "rpc"),
    CASES,
    ids=[f"{n}.{s.rpartition('.')[2]}.{r}" for n, s, r in CASES],
)
def test_generated_requests_get_a_deliberate_answer_and_leave_nothing_partial(
    services: Services, name: ServiceName, service: str, rpc: str
) -> None:
    desc = next(d for d in DESCRIPTORS[name] if d.full_name == service)
    method = desc.methods_by_name[rpc]
    roles = services.policy(name).roles_for(f"/{service}/{rpc}")
    requests = messages(method.input_type, pool=services.pool)
    dump = services.dumps[name]

    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests, metadata=tokens(services, roles))
    def check(request: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        before = dump.snapshot()
        code = services.call(name, method, request, metadata)
        assert code not in NOT_DELIBERATE, f"{name}.{rpc} answered {code.name}"
        if code != grpc.StatusCode.OK:
            appendable, free = refusal_records(rpc, code)
            written = changes(before, dump.snapshot(), appendable=appendable, free=free)
            assert not written, f"{name}.{rpc} refused ({code.name}) but wrote: {written}"

    check()
