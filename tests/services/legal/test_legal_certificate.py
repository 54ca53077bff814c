"""Legal aid learns that a medical certificate exists (issue 15): the
journey's `legal.note_certificate` calls NoteCertificate as legal aid's
service identity; the legal file then shows its date and ITT days — never
any clinical content — and a purge erases them. Real gRPC server, SQLite
and PostgreSQL."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from masar.platform.identity import Role
from masar.v1 import common_pb2, legal_pb2, legal_pb2_grpc
from tests.services.harness import error_field
from tests.services.legal.helpers import ago, ahead, aid_request, create_provider, key, stub_of


def note(referral_id: str, *, itt_days: int = 21, issued_at=None, idem=None):
    return legal_pb2.NoteCertificateRequest(
        referral_id=referral_id,
        issued_at=issued_at if issued_at is not None else ago(hours=2),
        itt_days=itt_days,
        idempotency_key=key() if idem is None else idem,
    )


async def test_the_legal_file_shows_a_certificate_and_nothing_clinical(legal) -> None:
    stub = stub_of(legal)
    await create_provider(stub)
    referral = (await stub.RequestLegalAid(aid_request())).referral
    rid = referral.referral_id

    file = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=rid))
    assert not file.HasField("certificate")
    first = note(rid, itt_days=21, idem="certificate-1")
    noted = await stub.NoteCertificate(first)
    assert await stub.NoteCertificate(first) == noted  # once per key
    assert (noted.certificate.itt_days, noted.certificate.itt_over_20_days) == (21, True)
    file = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=rid))
    assert file.certificate.itt_days == 21 and file.certificate.HasField("issued_at")
    assert set(legal_pb2.MedicalCertificate.DESCRIPTOR.fields_by_name) == {
        "issued_at",
        "itt_days",
        "itt_over_20_days",
    }
    # A later certificate replaces it (20 days: not the heavier qualification).
    replaced = await stub.NoteCertificate(note(rid, itt_days=20))
    assert (replaced.certificate.itt_days, replaced.certificate.itt_over_20_days) == (20, False)
    # Nothing goes to the journey: no outbox entry.
    assert legal.count("outbox") == 0

    # Only legal aid's own service identity tells it (the journey's activity).
    for role, org, region in [
        (Role.LEGAL_AID, "org-1e9a10000001", ""),
        (Role.HEALTH_STAFF, "org-1e9a10000001", ""),
        (Role.COORDINATOR, "", "fes-meknes"),
        (Role.SERVICE_HEALTH, "", ""),
    ]:
        other = legal_pb2_grpc.LegalAidServiceStub(legal.channel_as(role, org, region))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await other.NoteCertificate(note(rid, itt_days=3))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, role

    # Bad input names the field and writes nothing.
    before = legal.scalar(
        "SELECT certificate_itt_days FROM referrals WHERE referral_id = :r", r=rid
    )
    without_time = note(rid)
    without_time.ClearField("issued_at")
    for request, field in [
        (note(rid, itt_days=366), "itt_days"),
        (note(rid, itt_days=-1), "itt_days"),
        (note(rid, issued_at=ahead(hours=3)), "issued_at"),
        (without_time, "issued_at"),
        (note("hlt-0123456789abcdef"), "referral_id"),
        (note(rid, idem=""), "idempotency_key"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.NoteCertificate(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(err.value) == field
    assert (
        legal.scalar("SELECT certificate_itt_days FROM referrals WHERE referral_id = :r", r=rid)
        == before
    )

    # Consent withdrawn: the certificate's traces go with the rest.
    await stub.PurgeCase(
        common_pb2.PurgeCaseRequest(case_id=referral.case_id, idempotency_key=key())
    )
    assert (
        legal.scalar("SELECT certificate_issued_at FROM referrals WHERE referral_id = :r", r=rid)
        is None
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.NoteCertificate(note(rid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
