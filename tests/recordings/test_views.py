"""Downloading a recording: Range requests for seeking, only for people allowed, every access audited."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from consent import services as consent_services
from consent.models import AuditEvent
from mentoring.models import Participant
from recordings.models import Recording
from tests.conftest import ALL_PURPOSES

from .fixtures import ClipFacts


def url(recording: Recording, index: int | None = None) -> str:
    if index is None:
        return f"/recordings/{recording.public_id}/video.mp4"
    return f"/recordings/{recording.public_id}/parts/{index}.mp4"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_the_surgeon_gets_the_whole_mp4(available_recording: Recording, bob: Any, clip: Path) -> None:
    response = signed_in(bob).get(url(available_recording))
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Accept-Ranges"] == "bytes"
    assert body(response) == clip.read_bytes()
    assert AuditEvent.objects.filter(action="recording.view", outcome="allowed", actor=f"user:{bob.pk}", detail__segment=0).exists()


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, None), ("bytes=-500", -500, None), ("bytes=100-99999999", 100, None)],
)
def test_a_range_request_gets_exactly_those_bytes(
    available_recording: Recording, alice: Any, clip: Path, header: str, first: int, last: int | None
) -> None:
    data = clip.read_bytes()
    response = signed_in(alice).get(url(available_recording, 1), HTTP_RANGE=header)
    assert response.status_code == 206
    expected = data[first:] if last is None else data[first : last + 1]
    assert body(response) == expected
    start = first if first >= 0 else len(data) + first
    assert response["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    assert response["Content-Length"] == str(len(expected))


@pytest.mark.parametrize("header", ["bytes=99999999-", "bytes=500-100", "bytes=-0", "bytes=-"])
def test_a_range_outside_the_file_is_416(available_recording: Recording, alice: Any, clip_facts: ClipFacts, header: str) -> None:
    response = signed_in(alice).get(url(available_recording), HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{clip_facts.size}"


def test_seeking_is_not_audited_as_a_new_viewing(available_recording: Recording, alice: Any) -> None:
    client = signed_in(alice)
    client.get(url(available_recording), HTTP_RANGE="bytes=0-")
    client.get(url(available_recording), HTTP_RANGE="bytes=5000-")
    assert AuditEvent.objects.filter(action="recording.view", outcome="allowed").count() == 1


def test_a_resident_views_only_when_the_patient_consented_to_training(
    available_recording: Recording, resident: Participant, dave: Any
) -> None:
    assert signed_in(dave).get(url(available_recording), HTTP_RANGE="bytes=0-9").status_code == 206


def test_a_resident_is_refused_without_training_consent_and_it_is_audited(
    available_recording: Recording, resident: Participant, dave: Any, consent_form: Any, alice: Any
) -> None:
    consent_services.consent_record(
        session=available_recording.session, form=consent_form,
        decisions={p: p != "archive_training" for p in ALL_PURPOSES}, obtained_by=alice, attestation="Signed form v2",
    )
    response = signed_in(dave).get(url(available_recording))
    assert response.status_code == 403
    assert b"archive_training" in response.content
    assert AuditEvent.objects.filter(
        action="recording.view", outcome="refused", actor=f"user:{dave.pk}", detail__missing_purpose="archive_training"
    ).exists()


def test_an_outsider_is_refused_and_it_is_audited(available_recording: Recording, eve: Any) -> None:
    response = signed_in(eve).get(url(available_recording))
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="recording.view", outcome="refused", actor=f"user:{eve.pk}").exists()


def test_nobody_signed_out_gets_a_byte(available_recording: Recording) -> None:
    response = Client().get(url(available_recording))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert AuditEvent.objects.filter(action="recording.view", outcome="refused", actor="anonymous").exists()


def test_a_restricted_recording_is_refused_even_to_the_coordinator(available_recording: Recording, alice: Any) -> None:
    consent_services.consent_withdraw(record=consent_services.consent_in_force(session=available_recording.session), by=alice)
    response = signed_in(alice).get(url(available_recording))
    assert response.status_code == 403
    assert b"withdrew consent" in response.content


def test_an_unknown_recording_or_part_is_404(available_recording: Recording, alice: Any) -> None:
    client = signed_in(alice)
    assert client.get("/recordings/00000000-0000-0000-0000-000000000000/video.mp4").status_code == 404
    assert client.get(url(available_recording, 9)).status_code == 404


def test_the_url_and_file_name_carry_no_patient_reference(available_recording: Recording, alice: Any) -> None:
    response = signed_in(alice).get(url(available_recording))
    assert "CASE-0042" not in url(available_recording)
    assert "CASE-0042" not in response["Content-Disposition"]
    assert str(available_recording.public_id) in response["Content-Disposition"]


def views_of(recording: Recording) -> int:
    return AuditEvent.objects.filter(action="recording.view", outcome="allowed", target=f"recording:{recording.public_id}").count()


@pytest.mark.parametrize(
    "header",
    [
        "bytes=-100000000",  # a suffix longer than the file: the whole file
        "bytes=1-",
        "foo",  # not a byte range: ignored, the whole file
        "bytes=0-99, 200-299",  # several ranges: the whole file
        "bytes=" + "9" * 5000 + "-",  # past the end of any file
        "bytes=0-" + "9" * 5000,
        "bytes=-" + "9" * 5000,
        "bytes=" + "0" * 5000 + "1-",
    ],
)
def test_any_range_header_is_answered_and_the_viewing_audited_first(
    available_recording: Recording, alice: Any, clip: Path, header: str
) -> None:
    data = clip.read_bytes()
    response = signed_in(alice).get(url(available_recording), HTTP_RANGE=header)
    assert response.status_code in (200, 206, 416)
    assert views_of(available_recording) == 1
    if response.status_code == 416:
        assert response["Content-Range"] == f"bytes */{len(data)}"
        return
    served = body(response)
    assert served and (data.endswith(served) or data.startswith(served))
    assert response["Content-Length"] == str(len(served))


def test_one_viewing_is_one_event_whatever_its_ranges_and_parts(available_recording: Recording, alice: Any) -> None:
    client = signed_in(alice)
    for index, header in [(0, "bytes=-100000000"), (0, "bytes=1-"), (0, "foo"), (1, "bytes=5000-"), (0, None)]:
        extra = {"HTTP_RANGE": header} if header else {}
        assert client.get(url(available_recording, index), **extra).status_code in (200, 206)
    assert views_of(available_recording) == 1
    event = AuditEvent.objects.get(action="recording.view", outcome="allowed")
    assert event.actor == f"user:{alice.pk}" and event.detail["segment"] == 0


def test_another_browser_or_a_long_pause_starts_a_new_viewing(available_recording: Recording, alice: Any, settings) -> None:
    from recordings.models import Viewing

    first = signed_in(alice)
    first.get(url(available_recording), HTTP_RANGE="bytes=100-")
    signed_in(alice).get(url(available_recording), HTTP_RANGE="bytes=100-")  # a second sign-in
    assert views_of(available_recording) == 2
    Viewing.objects.update(last_at=timezone.now() - timedelta(minutes=settings.RECORDING_VIEWING_IDLE_MINUTES + 1))
    first.get(url(available_recording), HTTP_RANGE="bytes=200-")
    assert views_of(available_recording) == 3
    # The session key (a credential) is not what is stored.
    assert first.session.session_key not in set(Viewing.objects.values_list("browser", flat=True))


@pytest.mark.django_db(transaction=True)
def test_parallel_first_requests_of_one_viewing_write_one_event(available_recording: Recording, alice: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    client = signed_in(alice)

    def fetch(header: str) -> int:
        try:
            response = client.get(url(available_recording), HTTP_RANGE=header)
            body(response)
            return response.status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(fetch, [f"bytes={n * 100}-" for n in range(12)]))
    assert set(codes) == {206}
    assert views_of(available_recording) == 1
