"""DICOM networking with the hospital's nodes (pynetdicom): echo, worklist find, procedure step,
store and get. Called by hospital.services only; raises ``DimseError`` with a message a PACS or
RIS administrator can act on (which node, what it answered). Never logs a dataset: datasets
carry patient identifiers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

# pynetdicom logs every dataset it sends and receives at INFO: they carry patient identifiers.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

# Status codes that mean the request was carried out (0x0000) or with a warning (0xB...).
SUCCESS = 0x0000


class DimseError(Exception):
    """A DICOM node that did not do what was asked; the message says which and why."""


@dataclass(frozen=True)
class Node:
    name: str
    ae_title: str
    host: str
    port: int
    calling_ae_title: str


def node_of(row: Any) -> Node:
    if not row.host or not row.port:
        raise DimseError(f"{row.name}: set its host and port first.")
    return Node(name=row.name, ae_title=row.ae_title, host=row.host, port=int(row.port), calling_ae_title=row.calling_ae_title)


def _ae(calling: str) -> AE:
    ae = AE(ae_title=calling)
    timeout = settings.HOSPITAL_DICOM_TIMEOUT_SECONDS
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = min(10, timeout)
    return ae


@contextmanager
def _associate(ae: AE, node: Node, **kwargs: Any) -> Iterator[Association]:
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, **kwargs)
    if not assoc.is_established:
        # A node that rejects often closes the socket at once after its A-ASSOCIATE-RJ, and the
        # rejection can be read as an abort: one that takes a TCP connection answered, and refused.
        if assoc.is_rejected or _reachable(node):
            raise DimseError(
                f"{node.name} ({node.ae_title} at {node.host}:{node.port}) rejected the association: check that it "
                f"knows the calling AE title {node.calling_ae_title!r} and that {node.ae_title!r} is its AE title."
            )
        raise DimseError(f"{node.name} ({node.host}:{node.port}) could not be reached or did not answer.")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


PENDING = (0xFF00, 0xFF01)


def _reachable(node: Node) -> bool:
    try:
        with socket.create_connection((node.host, node.port), timeout=5):
            return True
    except OSError:
        return False


def _status(node: Node, what: str, status: Any) -> int:
    if status is None or "Status" not in status:
        raise DimseError(f"{node.name} did not answer the {what} in time (the association was aborted).")
    code = int(status.Status)
    if code != SUCCESS and code not in PENDING and not 0xB000 <= code <= 0xBFFF:
        comment = str(getattr(status, "ErrorComment", "") or "")[:200]
        raise DimseError(f"{node.name} refused the {what}: status 0x{code:04X}{' (' + comment + ')' if comment else ''}.")
    return code


def echo(node: Node) -> str:
    ae = _ae(node.calling_ae_title)
    ae.add_requested_context(Verification)
    with _associate(ae, node) as assoc:
        _status(node, "C-ECHO", assoc.send_c_echo())
    return f"{node.name} answered C-ECHO ({node.ae_title} at {node.host}:{node.port})."


def worklist_find(node: Node, query: Dataset) -> list[Dataset]:
    ae = _ae(node.calling_ae_title)
    ae.add_requested_context(ModalityWorklistInformationFind)
    found: list[Dataset] = []
    with _associate(ae, node) as assoc:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            code = _status(node, "worklist query", status)
            if code in PENDING and identifier is not None:
                found.append(identifier)
    return found


def mpps_create(node: Node, instance_uid: str, attributes: Dataset) -> None:
    ae = _ae(node.calling_ae_title)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    with _associate(ae, node) as assoc:
        status, _ = assoc.send_n_create(attributes, ModalityPerformedProcedureStep, instance_uid)
        _status(node, "procedure step N-CREATE", status)


def mpps_set(node: Node, instance_uid: str, modification: Dataset) -> None:
    ae = _ae(node.calling_ae_title)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    with _associate(ae, node) as assoc:
        status, _ = assoc.send_n_set(modification, ModalityPerformedProcedureStep, instance_uid)
        _status(node, "procedure step N-SET", status)


def store(node: Node, paths: list[Path], *, sop_class: str, transfer_syntax: str) -> None:
    """C-STORE each file. One transfer syntax per presentation context: offered together with
    Explicit VR Little Endian, some PACS (Orthanc) accept uncompressed and then fail the store."""
    ae = _ae(node.calling_ae_title)
    ae.add_requested_context(sop_class, [transfer_syntax])
    with _associate(ae, node) as assoc:
        accepted = [c for c in assoc.accepted_contexts if c.abstract_syntax == sop_class]
        if not accepted:
            raise DimseError(
                f"{node.name} does not take this video (SOP class {sop_class}, transfer syntax {transfer_syntax}): "
                "ask its administrator to accept video storage with this syntax."
            )
        for path in paths:
            _status(node, "C-STORE", assoc.send_c_store(path))


def get(node: Node, *, study_uid: str, series_uid: str, instance_uid: str, sop_class: str, transfer_syntax: str) -> Dataset:
    """C-GET one instance back (this AE plays the storage SCP on the same association)."""
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        received.append(dataset)
        return SUCCESS

    ae = _ae(node.calling_ae_title)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(sop_class, [transfer_syntax])
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID, query.SeriesInstanceUID, query.SOPInstanceUID = study_uid, series_uid, instance_uid
    with _associate(ae, node, ext_neg=[build_role(sop_class, scp_role=True)], evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            _status(node, "C-GET", status)
    if not received:
        raise DimseError(f"{node.name} returned nothing for a stored instance: it may not keep what it accepted.")
    return received[0]
