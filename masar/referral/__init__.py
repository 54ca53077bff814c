"""The sector side of the referral handshake, written once for every sector.

Shelter, legal aid and employment all receive referrals from the journey and
answer them the same way (DESIGN.md, "Referral handshake"): a PENDING referral
to a chosen provider, then the provider's decision (ACCEPTED, or DECLINED with
a structured reason), then the sector's milestones (STARTED, COMPLETED); the
journey may close a referral (REROUTED, EXPIRED, WITHDRAWN), remind its
provider, or purge a case whose consent was withdrawn. This package holds all
of that; a sector supplies only its own data and rules. (The journey's side of
the handshake is `workflows.handshake`; neither imports the other.)

How a sector uses it
--------------------
Every sector folder has the same files: ``domain``, ``models``,
``repository``, ``service``, ``servicer``, ``activities``, ``app``,
``migrations/`` and ``__main__``.

1. ``models.py`` — the referral table and the handshake's own tables::

       class Base(DeclarativeBase):
           metadata = new_metadata()

       TABLES = handshake_tables(Base.metadata)  # outbox, idempotency_keys, audit log

       class PlacementRow(ReferralColumns, Base):
           __tablename__ = "referrals"
           # only what the sector needs, nullable so a purge can erase it
           household_size: Mapped[int | None] = mapped_column(Integer)

   ``migrations/versions/0001_initial.py`` calls
   ``masar.platform.migrations.create_ledger_and_outbox(op)`` and
   ``masar.referral.migrations.create_referrals_table(op, *the sector's
   columns)``; ``0002_audit_log.py`` is ``upgrade = upgrade_audit_log`` (the
   same module): the tables every sector has come from one place.

2. ``repository.py`` — the provider table's queries on ``ProviderRows``
   (``row``, ``lock``, ``exists``, ``check_known``, ``organisation_of``) and
   a ``SectorHooks`` subclass: choose a provider (``choose_provider``), name
   its organisation (``provider_organisation``), vet a provider a coordinator named
   (``check_provider``: ``NoEligibleProvider("provider_id: ...")`` saying
   whether it is unknown or why it cannot take the referral), store the needs
   on a new referral (``store_needs``), hold and release capacity when a
   referral changes status (``on_transition``: e.g. PENDING -> ACCEPTED
   reserves beds, ACCEPTED -> IN_SERVICE turns them into occupied beds,
   anything -> WITHDRAWN frees them), and erase what a purge must erase
   (``purge_needs``, with ``erase``). Every hook runs inside the caller's unit of work; a hook
   that raises rolls everything back. On PostgreSQL a capacity hook locks the
   provider row (``with_for_update()``); on SQLite every unit of work is
   already ``BEGIN IMMEDIATE``.

3. ``service.py`` — the sector's business rules (e.g. ``ShelterService``),
   between servicer and repository. It holds the sector's
   ``SectorHandshake`` as ``referrals`` and delegates to it: ``create``
   (consent proof checked), ``record_milestone`` (a step the journey hears
   of), ``update_local`` (one it does not), ``read_file`` (an audited read),
   ``register`` (reference data, once per key).

4. ``servicer.py`` — every RPC of the sector's service written out, typed
   with its request and response messages and its roles
   (``masar.platform.access.requires``), translating protobuf <-> domain
   with ``masar.referral.messages`` and calling the service. An RPC on one
   referral first calls ``referrals.authorise(request.referral_id)``, then
   reads the rest of its request; one registering reference data first calls
   ``referrals.require_own_region``. The six RPCs of common.proto
   (DecideReferral, GetReferral, ListReferrals, RemindProvider,
   CloseReferral, PurgeCase) are written out too, each delegating in one line
   to ``ReferralEndpoints`` (``self.shared.decide(request)``, ...).

5. ``activities.py`` — a ``SectorActivities`` subclass (set ``sector``,
   implement ``submit_request``: the sector's request RPC with the
   ``RequestFields`` it is given and its needs, ``NeedCodes`` for coded
   ones) whose four methods are declared with
   ``@activity.defn(name=contract.SHELTER_REQUEST_REFERRAL)`` and so on,
   each calling ``forward_request`` / ``forward_reminder`` /
   ``forward_closure`` / ``forward_purge``.

6. ``app.py`` — a function giving the sector's ``SectorParts`` (model,
   tables, hooks, servicer, gRPC service, activities), and
   ``build_components = sector_builder(that function)``: the kit wires the
   handshake on the sector's tables and outbox, the servicer and the
   activities.

Idempotency
-----------
Every create and every staff action carries an idempotency key. The ledger
(``idempotency_keys``) remembers (scope, key) with a fingerprint of the
request: a retry returns the first result and writes nothing; the same key
with a different request is INVALID_ARGUMENT on ``idempotency_key``. Referral
rows also keep their creating key under a unique constraint. Concurrent
first attempts with one key on PostgreSQL meet a unique violation; the unit of
work is then retried and finds the first result.

Staff actions reach the journey synchronously
---------------------------------------------
A decision or a milestone is written together with its outbox entry (a
``ReferralDecision`` / ``ReferralMilestone`` whose ``event_id`` is derived from
the referral id and the idempotency key) in ONE unit of work; then
``Outbox.deliver`` is tried at once. The answer is DELIVERED, or QUEUED when
Temporal is unreachable (the outbox dispatcher delivers it later; the journey
deduplicates by event id). If the journey REJECTS the update (its validator
says the referral is unknown or stale), the local change is reverted in a
second unit of work (status, the row's columns and the capacity it held) and
``FailedPrecondition`` is raised, so staff get a synchronous "no". A retry
with the same key then gets the same answer. A QUEUED entry that the journey
rejects later, when the dispatcher delivers it, is only marked REJECTED in the
outbox; it is not reverted.

Who may call what
-----------------
Each servicer method declares its roles; the shared RPCs are open to the
sector's staff (DecideReferral; GetReferral and ListReferrals too), its
coordinators (GetReferral, ListReferrals) and its service identity (its
activities, on behalf of the journey: GetReferral, RemindProvider,
CloseReferral, PurgeCase). Per referral, ``SectorHandshake.authorise`` lets
the sector's staff act on the referrals addressed to their own organisation
(token ``org`` == the referral's ``organisation_id``) and a coordinator on
those of her own region; ``list_visible`` narrows listings the same way.

Providers belong to organisations
---------------------------------
Every provider (shelter, legal aid provider, programme) names the
organisation of the network it belongs to (``organisation_id``, required
when it is registered: an opaque id the coordinator gives; the sectors never
call the network service). A new referral copies its provider's
organisation (``SectorHooks.provider_organisation``, answered by
``ProviderRows.organisation_of``), so "the staff of the provider's
organisation" are the people whose token names that organisation, and an
organisation running several shelters sees the referrals of all of them.
Providers registered before this (each sector's migration 0003) name none:
their referrals are seen by coordinators and by no staff (deny by default)
until an operator assigns the provider an organisation (the migration says
how).

A referral request must carry intake's consent proof (``masar.referral.consent``):
``SectorHandshake.create`` refuses it otherwise.

Audit
-----
Every referral created, every staff decision, milestone and local step, every
closure, every purge and every read of a sector's case file is an audit entry
(``masar.platform.audit``) in the same unit of work as the change it records.

Nothing here logs, raises or returns personal data: errors name the field.
"""

from masar.referral._activities import (
    ConsentSource,
    NeedCodes,
    RequestFields,
    SectorActivities,
)
from masar.referral._app import SectorParts, dial_address, sector_builder
from masar.referral._domain import (
    OPEN_STATUSES,
    NoEligibleProvider,
    ReferralDraft,
    ReferralRecord,
)
from masar.referral._endpoints import ReferralEndpoints
from masar.referral._handshake import SectorHandshake
from masar.referral._models import ORGANISATION_ID_LENGTH, ReferralColumns, handshake_tables
from masar.referral._repository import ProviderRows, SectorHooks, erase
from masar.referral._roles import STAFF_ROLES

__all__ = [
    "OPEN_STATUSES",
    "ORGANISATION_ID_LENGTH",
    "STAFF_ROLES",
    "ConsentSource",
    "NeedCodes",
    "NoEligibleProvider",
    "ProviderRows",
    "ReferralColumns",
    "ReferralDraft",
    "ReferralEndpoints",
    "ReferralRecord",
    "RequestFields",
    "SectorActivities",
    "SectorHandshake",
    "SectorHooks",
    "SectorParts",
    "dial_address",
    "erase",
    "handshake_tables",
    "sector_builder",
]
