"""Fixtures of the hospital tests: real Orthanc, an MPPS SCP, a FHIR server with its token
endpoint (tests/hospital/servers.py), configured in the database as a hospital would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from hospital.models import FhirServer, MppsReceiver, PacsDestination, RoomModality, WorklistProvider
from mentoring.models import OperatingRoom
from tests.hospital import servers
from tests.recordings.fixtures import available_recording, clip, clip_facts, spool, stopped_recording  # noqa: F401

STATION = "OR3SCOPE"
PATIENT = {"id": "PID-778812", "name": "Dupont^Jeanne-Éloïse", "birth_date": "19610412", "sex": "F"}


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Orthanc]:
    pacs = servers.orthanc_start(tmp_path_factory.mktemp("orthanc"))
    yield pacs
    pacs.stop()


@pytest.fixture
def mpps_scp() -> Iterator[servers.MppsScp]:
    scp = servers.MppsScp(port=servers.free_port()).start()
    yield scp
    scp.stop()


@pytest.fixture(scope="session")
def fhir_keys() -> tuple[str, str]:
    return servers.client_key_pair()


@pytest.fixture(scope="session")
def fhir_process(tmp_path_factory: pytest.TempPathFactory, fhir_keys: tuple[str, str]) -> Iterator[servers.FhirProcess]:
    server = servers.FhirProcess(port=servers.free_port(), private_key=fhir_keys[0])
    server.start(tmp_path_factory.mktemp("fhir"), fhir_keys[1])
    yield server
    server.stop()


def worklist_write(orthanc: servers.Orthanc, *, accession: str, day: date, hour: int = 9, station: str = STATION,
                   modality: str = "GM", description: str = "Microvascular decompression", patient: dict[str, str] = PATIENT,
                   study_uid: str | None = None) -> Path:
    """One scheduled procedure step as a RIS would put it in Orthanc's worklist folder."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.31")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = patient["name"], patient["id"]
    ds.PatientBirthDate, ds.PatientSex = patient["birth_date"], patient["sex"]
    ds.AccessionNumber = accession
    ds.RequestedProcedureID = f"RP{accession[-4:]}"
    ds.RequestedProcedureDescription = description
    ds.StudyInstanceUID = study_uid or generate_uid()
    step = Dataset()
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = day.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = f"{hour:02d}0000"
    step.Modality = modality
    step.ScheduledProcedureStepID = f"SPS{accession[-4:]}"
    step.ScheduledProcedureStepDescription = description
    ds.ScheduledProcedureStepSequence = Sequence([step])
    path = orthanc.worklists / f"{accession}.wl"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def worklist_provider(orthanc: servers.Orthanc, db: Any) -> WorklistProvider:
    for old in orthanc.worklists.glob("*.wl"):
        old.unlink()
    return WorklistProvider.objects.create(name="RIS worklist", ae_title=orthanc.ae_title, host="127.0.0.1",
                                           port=orthanc.dicom_port, calling_ae_title="ORSTREAM")


@pytest.fixture
def cstore_pacs(orthanc: servers.Orthanc, db: Any) -> PacsDestination:
    return PacsDestination.objects.create(name="Orthanc (C-STORE)", ae_title=orthanc.ae_title, host="127.0.0.1",
                                          port=orthanc.dicom_port, method=PacsDestination.Method.CSTORE)


@pytest.fixture
def stow_pacs(orthanc: servers.Orthanc, db: Any) -> PacsDestination:
    return PacsDestination.objects.create(name="Orthanc (DICOMweb)", ae_title=orthanc.ae_title,
                                          method=PacsDestination.Method.STOW, dicomweb_url=orthanc.dicomweb)


@pytest.fixture
def mpps_receiver(mpps_scp: servers.MppsScp, db: Any) -> MppsReceiver:
    return MppsReceiver.objects.create(name="RIS MPPS", ae_title=mpps_scp.ae_title, host="127.0.0.1", port=mpps_scp.port)


@pytest.fixture
def fhir_server(fhir_process: servers.FhirProcess, settings: Any, db: Any) -> FhirServer:
    settings.FHIR_PRIVATE_KEY = fhir_process.private_key
    return FhirServer.objects.create(name="EHR", base_url=fhir_process.base_url, token_url=fhir_process.token_url,
                                     client_id=fhir_process.client_id, key_id=fhir_process.key_id)


@pytest.fixture
def room_modality(room: OperatingRoom) -> RoomModality:
    return RoomModality.objects.create(room=room, kind=RoomModality.Kind.MICROSCOPE, station_ae_title=STATION, station_name="OR3")


def today_at(hour: int) -> datetime:
    return datetime.combine(date.today(), datetime.min.time()).replace(hour=hour)
