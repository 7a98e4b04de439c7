"""The worklist pick against Orthanc's worklist plugin, and where patient identifiers may go."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import pytest

from consent.models import AuditEvent
from hospital import services
from hospital.models import Procedure
from tests.hospital.conftest import PATIENT, STATION, worklist_write


def test_worklist_returns_the_days_procedures_for_the_station(orthanc: Any, worklist_provider: Any) -> None:
    day = date.today()
    worklist_write(orthanc, accession="ACC0001", day=day, hour=8)
    worklist_write(orthanc, accession="ACC0002", day=day, hour=13, description="Acoustic neuroma resection")
    worklist_write(orthanc, accession="ACC0003", day=day + timedelta(days=1))
    worklist_write(orthanc, accession="ACC0004", day=day, station="OTHERROOM")
    worklist_write(orthanc, accession="ACC0005", day=day, modality="ES")

    entries = services.worklist_query(provider=worklist_provider, day=day, station_ae_title=STATION, modality="GM")

    assert [e.accession_number for e in entries] == ["ACC0001", "ACC0002"]
    assert entries[1].requested_procedure_description == "Acoustic neuroma resection"
    assert entries[0].scheduled_start is not None and entries[0].scheduled_start.hour == 8
    # The page's choice carries the patient sealed, never in clear.
    assert PATIENT["id"] not in entries[0].choice and "Dupont" not in entries[0].choice


def test_picking_an_entry_keeps_the_procedure_and_seals_the_patient(
    orthanc: Any, worklist_provider: Any, session: Any, alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    worklist_write(orthanc, accession="ACC0042", day=date.today(), study_uid="1.2.826.0.1.3680043.8.498.4242")
    entry = services.worklist_query(provider=worklist_provider, day=date.today())[0]

    procedure = services.procedure_pick(session=session, choice=entry.choice, by=alice)

    row = Procedure.objects.get(pk=procedure.pk)
    assert (row.accession_number, row.requested_procedure_id) == ("ACC0042", "RP0042")
    assert row.study_instance_uid == "1.2.826.0.1.3680043.8.498.4242"
    assert PATIENT["id"] not in row.patient_sealed and "Dupont" not in row.patient_sealed
    assert services.patient_unseal(row.patient_sealed)["name"] == PATIENT["name"]  # UTF-8 survives
    audit = AuditEvent.objects.get(action="hospital.worklist_pick")
    assert PATIENT["id"] not in str(audit.detail) + audit.target
    assert PATIENT["id"] not in caplog.text


def test_a_worklist_that_does_not_answer_says_so(worklist_provider: Any) -> None:
    worklist_provider.port = 1
    with pytest.raises(services.HospitalError, match="could not be reached"):
        services.worklist_query(provider=worklist_provider, day=date.today())


def test_a_worklist_that_rejects_our_ae_title_names_it(worklist_provider: Any) -> None:
    worklist_provider.ae_title = "NOTORTHANC"
    with pytest.raises(services.HospitalError, match="rejected the association"):
        services.worklist_query(provider=worklist_provider, day=date.today())


def test_a_tampered_choice_is_refused(session: Any, alice: Any) -> None:
    with pytest.raises(services.HospitalError, match="search the worklist again"):
        services.procedure_pick(session=session, choice="not-a-sealed-entry", by=alice)
