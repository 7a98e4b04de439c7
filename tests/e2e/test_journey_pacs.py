"""The hospital journey in a real browser on the real site: a coordinator picks the procedure
from the worklist (Orthanc's worklist plugin), the session goes live and ends (the RIS's MPPS SCP
gets IN PROGRESS, then COMPLETED), and the recording is sent to the PACS (Orthanc) and found
there under the worklist's study as valid DICOM video."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from hospital.models import DicomExport, Procedure
from recordings.models import Recording
from tests.hospital.conftest import (  # noqa: F401
    cstore_pacs,
    mpps_receiver,
    mpps_scp,
    orthanc,
    room_modality,
    worklist_provider,
    worklist_write,
)
from tests.recordings.fixtures import ClipFacts, clip, clip_facts, register_segments  # noqa: F401

from .conftest import screenshot
from .test_library import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def recorded(session: Any, consenting_patient: Any, bob: Any, clip: Path, clip_facts: ClipFacts) -> Iterator[Recording]:  # noqa: F811
    recording = Recording.objects.create(session=session, started_by=bob, status=Recording.Status.FINALIZING,
                                         ended_at=timezone.now())
    spool = Path(django_settings.RECORDINGS_SPOOL_DIR)
    try:
        register_segments(recording, clip, clip_facts, spool, 2)
        Recording.objects.filter(pk=recording.pk).update(status=Recording.Status.AVAILABLE, duration=2 * clip_facts.duration,
                                                          width=320, height=240, fps=30)
        recording.refresh_from_db()
        yield recording
    finally:
        shutil.rmtree(spool / recording.prefix, ignore_errors=True)


def test_a_coordinator_takes_a_worklist_procedure_to_the_pacs(
    site: Any, open_page: Any, orthanc: Any, worklist_provider: Any, cstore_pacs: Any, mpps_scp: Any,  # noqa: F811
    mpps_receiver: Any, room_modality: Any, recorded: Recording, alice: Any, tmp_path: Path, settings: Any,  # noqa: F811
) -> None:
    session = recorded.session
    worklist_write(orthanc, accession="ACC1313", day=session.planned_start.date(), description="Microvascular decompression")

    page = sign_in(open_page, site, alice, settings, f"/sessions/{session.public_id}/")
    page.get_by_role("link", name="Pick from the worklist").click()
    page.get_by_role("cell", name="ACC1313").wait_for()
    page.get_by_role("button", name="Pick").click()
    page.wait_for_url(f"**/sessions/{session.public_id}/")
    assert "accession ACC1313" in page.locator("#hospital").inner_text()

    page.get_by_role("button", name="Go live").click()
    page.get_by_role("button", name="End session").wait_for()
    assert [m for m, _, _ in mpps_scp.received] == ["N-CREATE"]
    page.get_by_role("button", name="End session").click()
    page.locator("#confirm-yes").click()
    page.wait_for_url(f"**/sessions/{session.public_id}/")
    assert [m for m, _, _ in mpps_scp.received] == ["N-CREATE", "N-SET"]
    assert mpps_scp.received[1][2].PerformedProcedureStepStatus == "COMPLETED"

    page.get_by_role("link", name="Send to the PACS").click()
    page.get_by_role("button", name="Send").click()
    page.get_by_text("Stored in the PACS (100%)").wait_for(timeout=60_000)
    screenshot(page, "pacs-export")

    export = DicomExport.objects.get(recording=recorded)
    procedure = Procedure.objects.get(session=session)
    series = [s for s in orthanc.get("/series?expand") if s["MainDicomTags"]["SeriesInstanceUID"] == export.series_instance_uid]
    assert len(series) == 1
    study = orthanc.get(f"/studies/{series[0]['ParentStudy']}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == procedure.study_instance_uid
    assert study["MainDicomTags"]["AccessionNumber"] == "ACC1313"
    stored = tmp_path / "stored.dcm"
    stored.write_bytes(orthanc.get_bytes(f"/instances/{series[0]['Instances'][0]}/file"))
    check = subprocess.run(["dciodvfy", str(stored)], capture_output=True, text=True)
    assert "Error" not in check.stderr, check.stderr
