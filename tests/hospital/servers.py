"""Real servers for the hospital tests: Orthanc (PACS, worklist, DICOMweb), a pynetdicom MPPS SCP
playing the RIS, a FHIR server on fhirstarter and a SMART token endpoint, each on loopback.

Orthanc has no bind-address option: its HTTP port stays local (RemoteAccessAllowed false) but its
DICOM port listens on every interface, so each Orthanc gets a port of its own, free on all of them.
"""

from __future__ import annotations

import functools
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGINS = "/usr/share/orthanc/plugins"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class Orthanc:
    folder: Path
    http_port: int
    dicom_port: int
    ae_title: str = "ORTHANC"
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def worklists(self) -> Path:
        return self.folder / "worklists"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.loads(reply.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            return bytes(reply.read())

    def start(self) -> Orthanc:
        self.worklists.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "orstream-test-pacs",
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowFindWorklist": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomCheckModalityHost": False,
            "UnknownSopClassAccepted": False,
            "StableAge": 1,
            "ConcurrentJobs": 1,
            "HttpServerThreads": 4,
            "Plugins": [f"{PLUGINS}/libModalityWorklists.so", f"{PLUGINS}/libOrthancDicomWeb.so"],
            "Worklists": {"Enable": True, "Database": str(self.worklists)},
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([ORTHANC, str(path)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start: {self.log.read_text()[-2000:]}")
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Orthanc did not answer within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def orthanc_start(folder: Path) -> Orthanc:
    folder.mkdir(parents=True, exist_ok=True)
    return Orthanc(folder=folder, http_port=free_port(), dicom_port=free_port("0.0.0.0")).start()


@dataclass
class FhirProcess:
    """tests/hospital/fhir_server.py under uvicorn, in a process of its own."""

    port: int
    private_key: str
    client_id: str = "orstream-test"
    key_id: str = "orstream-test-key"
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def start(self, folder: Path, public_key: str) -> FhirProcess:
        import os
        import sys

        env = {**os.environ, "ORSTREAM_TEST_FHIR_PUBLIC_KEY": public_key, "ORSTREAM_TEST_FHIR_CLIENT_ID": self.client_id,
               "ORSTREAM_TEST_FHIR_TOKEN_URL": self.token_url}
        log = (folder / "fhir.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.hospital.fhir_server:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the FHIR server exited at start: {(folder / 'fhir.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/metadata", timeout=5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the FHIR server did not answer within 60 s")

    def log(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.base_url}/_log", timeout=5) as reply:
            return list(json.loads(reply.read()))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@functools.cache
def client_key_pair() -> tuple[str, str]:
    """The FHIR client's key pair for the whole test run: the test process, the e2e site process
    (ORSTREAM_FHIR_PRIVATE_KEY) and the token endpoint (the public key) share it."""
    return rsa_key_pair()


def rsa_key_pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


@dataclass
class MppsScp:
    """A RIS's procedure-step service (pynetdicom): answers N-CREATE and N-SET and keeps what it
    got, as (message, SOP Instance UID, dataset). Orthanc has no MPPS service."""

    port: int
    ae_title: str = "RIS"
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    instances: dict[str, Any] = field(default_factory=dict)
    refuse: bool = False
    server: Any = None

    def start(self) -> MppsScp:
        from pydicom.dataset import Dataset
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

        def on_create(event: Any) -> tuple[int, Any]:
            request = event.request
            uid = str(request.AffectedSOPInstanceUID)
            attributes = event.attribute_list
            self.received.append(("N-CREATE", uid, attributes))
            if self.refuse:
                return 0x0110, None
            if uid in self.instances:
                return 0x0111, None  # duplicate SOP instance
            if attributes.get("PerformedProcedureStepStatus") != "IN PROGRESS":
                return 0x0106, None  # invalid attribute value
            self.instances[uid] = attributes
            return 0x0000, attributes

        def on_set(event: Any) -> tuple[int, Any]:
            uid = str(event.request.RequestedSOPInstanceUID)
            modification = event.modification_list
            self.received.append(("N-SET", uid, modification))
            stored = self.instances.get(uid)
            if stored is None:
                return 0x0112, None  # no such SOP instance
            if stored.PerformedProcedureStepStatus != "IN PROGRESS":
                return 0xA710, None  # already final: may no longer be updated
            for element in modification:
                stored[element.tag] = element
            return 0x0000, Dataset()

        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)]
        )
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
