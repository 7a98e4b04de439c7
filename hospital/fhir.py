"""The EHR link: FHIR R5 DocumentReference and Procedure for an exported recording, built with
fhir.resources and validated before they leave, sent as a SMART backend service (client
credentials with a signed JWT assertion). Called by hospital.services only; raises ``FhirError``
with what the server answered. Never logs a resource (they carry the patient's identifier).

R5 has no Media resource: a video is a DocumentReference. Its ``context`` is for encounters, so
the Procedure it documents is in ``event``; the recording's consent travels as an extension
pointing at the Consent (consent.fhir exports it) and as security labels of the purposes granted.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import jwt
import requests
from django.conf import settings
from fhir.resources.attachment import Attachment
from fhir.resources.codeableconcept import CodeableConcept
from fhir.resources.codeablereference import CodeableReference
from fhir.resources.coding import Coding
from fhir.resources.documentreference import DocumentReference, DocumentReferenceContent
from fhir.resources.extension import Extension
from fhir.resources.identifier import Identifier
from fhir.resources.period import Period
from fhir.resources.procedure import Procedure as FhirProcedure
from fhir.resources.reference import Reference

DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
ACCESSION_TYPE = CodeableConcept(coding=[Coding(system="http://terminology.hl7.org/CodeSystem/v2-0203", code="ACSN")])
PATIENT_ID_SYSTEM = "urn:orstream:hospital-patient-id"
RECORDING_SYSTEM = "urn:orstream:recording"
CONSENT_EXTENSION = "urn:orstream:fhir:recording-consent"
CONSENT_RECORD_SYSTEM = "urn:orstream:consent-record"
PURPOSE_SYSTEM = "urn:orstream:consent-purpose"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    """The FHIR server (or its token endpoint) did not take what was sent; the message says why."""


@dataclass(frozen=True)
class VideoPart:
    url: str
    size: int
    sha1_hex: str
    width: int
    height: int
    frames: int
    duration: float
    title: str


def _subject(patient: dict[str, str]) -> Reference:
    return Reference(type="Patient", identifier=Identifier(system=patient.get("issuer") or PATIENT_ID_SYSTEM, value=patient["id"]))


def procedure_resource(
    *, patient: dict[str, str], accession_number: str, description: str, status: str,
    start: datetime | None, end: datetime | None, resource_id: str = "",
) -> dict[str, Any]:
    resource = FhirProcedure(
        id=resource_id or None,
        status=status,
        subject=_subject(patient),
        identifier=[Identifier(type=ACCESSION_TYPE, value=accession_number)] if accession_number else None,
        code=CodeableConcept(text=description or "Procedure"),
        occurrencePeriod=Period(start=start, end=end) if start else None,
    )
    return resource.model_dump(mode="json", exclude_none=True)


def document_reference_resource(
    *, patient: dict[str, str], recording_public_id: str, procedure_id: str, modality: str, parts: list[VideoPart],
    created: datetime, consent_record_id: int | None, granted: list[str], description: str,
    status: str = "current", resource_id: str = "",
) -> dict[str, Any]:
    contents = [
        DocumentReferenceContent(
            attachment=Attachment(
                contentType="application/dicom", url=part.url, size=part.size,
                # base64Binary: fhir.resources takes the base64 text (as bytes) and writes it as is.
                hash=base64.b64encode(bytes.fromhex(part.sha1_hex)),
                width=part.width, height=part.height, frames=part.frames, duration=Decimal(f"{part.duration:.3f}"),
                title=part.title, creation=created,
            )
        )
        for part in parts
    ]
    extension = None
    if consent_record_id is not None:
        extension = [Extension(url=CONSENT_EXTENSION, valueReference=Reference(
            type="Consent", identifier=Identifier(system=CONSENT_RECORD_SYSTEM, value=str(consent_record_id))))]
    resource = DocumentReference(
        id=resource_id or None,
        status=status,
        identifier=[Identifier(system=RECORDING_SYSTEM, value=recording_public_id)],
        type=CodeableConcept(text="Surgical video recording"),
        modality=[CodeableConcept(coding=[Coding(system=DCM_SYSTEM, code=modality)])],
        subject=_subject(patient),
        event=[CodeableReference(reference=Reference(reference=f"Procedure/{procedure_id}"))],
        date=created,
        description=description,
        securityLabel=[CodeableConcept(coding=[Coding(system=PURPOSE_SYSTEM, code=p)]) for p in granted] or None,
        extension=extension,
        content=contents,
    )
    return resource.model_dump(mode="json", exclude_none=True)


class Client:
    """One FHIR server, with a bearer token from its SMART token endpoint when it has one."""

    def __init__(self, *, base_url: str, token_url: str, client_id: str, key_id: str, scope: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.client_id = client_id
        self.key_id = key_id
        self.scope = scope
        self._token = ""
        self._token_until = 0.0

    def _assertion(self) -> str:
        if not settings.FHIR_PRIVATE_KEY:
            raise FhirError("Set ORSTREAM_FHIR_PRIVATE_KEY (the key registered with the EHR) to sign in to its token endpoint.")
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "exp": now + 300,
                  "iat": now, "jti": uuid.uuid4().hex}
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, settings.FHIR_PRIVATE_KEY, algorithm=settings.FHIR_ASSERTION_ALGORITHM, headers=headers)

    def token(self) -> str:
        if not self.token_url:
            return ""
        if self._token and time.monotonic() < self._token_until:
            return self._token
        try:
            reply = requests.post(self.token_url, data={
                "grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self._assertion(),
            }, timeout=30)
        except requests.RequestException as failure:
            raise FhirError(f"The EHR's token endpoint could not be reached: {type(failure).__name__}.") from None
        if reply.status_code != 200:
            raise FhirError(f"The EHR's token endpoint refused this client (HTTP {reply.status_code}: {_why(reply)}).")
        data = reply.json()
        self._token = str(data["access_token"])
        self._token_until = time.monotonic() + max(0, int(data.get("expires_in", 300)) - 30)
        return self._token

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, params: Any = None) -> requests.Response:
        try:
            reply = requests.request(method, f"{self.base_url}/{path.lstrip('/')}", json=body, params=params,
                                     headers=self._headers(), timeout=30)
        except requests.RequestException as failure:
            raise FhirError(f"The FHIR server at {self.base_url} could not be reached: {type(failure).__name__}.") from None
        if reply.status_code >= 400:
            raise FhirError(f"The FHIR server refused {method} {path.split('/')[0]} (HTTP {reply.status_code}: {_why(reply)}).")
        return reply

    def create(self, resource: dict[str, Any]) -> str:
        reply = self.request("POST", resource["resourceType"], resource)
        location = reply.headers.get("Location", "")
        if location:
            # .../Type/id/_history/n or .../Type/id
            pieces = location.rstrip("/").split("/")
            if "_history" in pieces:
                pieces = pieces[: pieces.index("_history")]
            return pieces[-1]
        return str(reply.json()["id"])

    def update(self, resource: dict[str, Any]) -> None:
        self.request("PUT", f"{resource['resourceType']}/{resource['id']}", resource)

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{resource_type}/{resource_id}").json())

    def metadata(self) -> dict[str, Any]:
        try:
            reply = requests.get(f"{self.base_url}/metadata", headers={"Accept": FHIR_JSON}, timeout=30)
        except requests.RequestException as failure:
            raise FhirError(f"The FHIR server at {self.base_url} could not be reached: {type(failure).__name__}.") from None
        if reply.status_code != 200:
            raise FhirError(f"{self.base_url}/metadata answered HTTP {reply.status_code}.")
        return dict(reply.json())


def _why(reply: requests.Response) -> str:
    try:
        data = reply.json()
    except ValueError:
        return reply.reason or "no reason given"
    if isinstance(data, dict):
        if data.get("resourceType") == "OperationOutcome":
            issues = data.get("issue") or [{}]
            return str(issues[0].get("diagnostics") or issues[0].get("code") or "OperationOutcome")[:200]
        return str(data.get("error_description") or data.get("error") or "")[:200]
    return ""
