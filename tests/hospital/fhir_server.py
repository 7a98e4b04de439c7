"""A FHIR R5 server for the tests (fhirstarter on fhir.resources), with the SMART token endpoint
that admits backend services: run as its own process by tests/hospital/servers.py.

It stores what it is sent (create, read, update, search by identifier or subject), in memory for
the life of the process, and refuses any FHIR request without a bearer token it issued. The
token endpoint checks the client's signed JWT assertion against the public key it is given
(ORSTREAM_TEST_FHIR_PUBLIC_KEY), its issuer, audience, expiry and that its jti is not replayed.

fhirstarter 4.2 dumps resources in Python mode before its JSON encoder (orjson) sees them, and
fhir.resources 8.3 gives base64Binary values (Attachment.hash) as bytes there, which orjson cannot
encode: the resource classes served here dump in JSON mode (``JsonDumped``), which is what the
wire carries anyway. Everything else is fhirstarter's own routing, validation and /metadata.
"""

import json
import os
import secrets
import time
import uuid
from typing import Any

import jwt
from fastapi import Form
from fastapi import Request as FastRequest
from fastapi.responses import JSONResponse
from fhir.resources.bundle import Bundle as FhirBundle
from fhir.resources.bundle import BundleEntry
from fhir.resources.documentreference import DocumentReference as FhirDocumentReference
from fhir.resources.procedure import Procedure as FhirProcedure
from fhirstarter import FHIRProvider, FHIRStarter, InteractionContext
from fhirstarter.exceptions import FHIRResourceNotFoundError
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response as StarletteResponse

CLIENT_ID = os.environ.get("ORSTREAM_TEST_FHIR_CLIENT_ID", "orstream")
PUBLIC_KEY = os.environ.get("ORSTREAM_TEST_FHIR_PUBLIC_KEY", "")
TOKEN_URL = os.environ.get("ORSTREAM_TEST_FHIR_TOKEN_URL", "")

class JsonDumped:
    def model_dump(self, **options: Any) -> dict[str, Any]:
        options.setdefault("mode", "json")
        return super().model_dump(**options)  # type: ignore[misc]


class DocumentReference(JsonDumped, FhirDocumentReference):
    pass


class Procedure(JsonDumped, FhirProcedure):
    pass


class Bundle(JsonDumped, FhirBundle):
    pass


STORE: dict[str, dict[str, str]] = {"DocumentReference": {}, "Procedure": {}}
TOKENS: dict[str, float] = {}
SEEN_JTI: set[str] = set()
LOG: list[dict[str, Any]] = []

app = FHIRStarter(title="orstream test FHIR server")
provider = FHIRProvider()


class BearerOnly(BaseHTTPMiddleware):
    async def dispatch(self, request: FastRequest, call_next: Any) -> StarletteResponse:
        path = request.url.path
        if path in ("/token", "/metadata", "/_log") or path.startswith(("/docs", "/openapi")):
            return await call_next(request)
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if TOKENS.get(token, 0) < time.time():
            LOG.append({"refused": path})
            return JSONResponse({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "login", "diagnostics": "no valid bearer token"}]}, status_code=401)
        LOG.append({"method": request.method, "path": path})
        return await call_next(request)


app.add_middleware(BearerOnly)


@app.post("/token", include_in_schema=False)
async def token(
    grant_type: str = Form(...), client_assertion_type: str = Form(...), client_assertion: str = Form(...), scope: str = Form("")
) -> JSONResponse:
    def refuse(why: str) -> JSONResponse:
        return JSONResponse({"error": "invalid_client", "error_description": why}, status_code=401)

    if grant_type != "client_credentials" or client_assertion_type != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    try:
        claims = jwt.decode(client_assertion, PUBLIC_KEY, algorithms=["RS384", "ES384"], audience=TOKEN_URL,
                            options={"require": ["exp", "iss", "sub", "aud", "jti"]})
    except jwt.PyJWTError as error:
        return refuse(f"assertion rejected: {type(error).__name__}")
    if claims["iss"] != CLIENT_ID or claims["sub"] != CLIENT_ID:
        return refuse("unknown client")
    if claims["jti"] in SEEN_JTI:
        return refuse("assertion replayed")
    SEEN_JTI.add(claims["jti"])
    issued = secrets.token_urlsafe(24)
    TOKENS[issued] = time.time() + 300
    return JSONResponse({"access_token": issued, "token_type": "bearer", "expires_in": 300, "scope": scope})


@app.get("/_log", include_in_schema=False)
async def request_log() -> JSONResponse:
    return JSONResponse(LOG)


def _matches(body: dict[str, Any], identifier: str | None, subject: str | None) -> bool:
    if identifier:
        system, _, value = identifier.rpartition("|")
        if not any(i.get("value") == value and (not system or i.get("system") == system) for i in body.get("identifier", [])):
            return False
    if subject:
        # subject=<system>|<value> here stands for the patient's identifier (no Patient resources).
        system, _, value = subject.rpartition("|")
        found = body.get("subject", {}).get("identifier") or {}
        if found.get("value") != value or (system and found.get("system") != system):
            return False
    return True


def _provide(model: Any) -> None:
    name = model.get_resource_type()

    @provider.create(model)
    async def create(context: InteractionContext, resource: Any) -> str:
        id_ = uuid.uuid4().hex[:16]
        resource.id = id_
        STORE[name][id_] = resource.model_dump_json(exclude_none=True)
        return id_

    @provider.read(model)
    async def read(context: InteractionContext, id_: str) -> Any:
        if id_ not in STORE[name]:
            raise FHIRResourceNotFoundError
        return model.model_validate_json(STORE[name][id_])

    @provider.update(model)
    async def update(context: InteractionContext, id_: str, resource: Any) -> str:
        if id_ not in STORE[name]:
            raise FHIRResourceNotFoundError
        resource.id = id_
        STORE[name][id_] = resource.model_dump_json(exclude_none=True)
        return id_

    @provider.search_type(model)
    async def search(context: InteractionContext, identifier: str | None, subject: str | None, status: str | None) -> Bundle:
        found = [json.loads(b) for b in STORE[name].values()]
        found = [b for b in found if _matches(b, identifier, subject) and (not status or b.get("status") == status)]
        return Bundle(type="searchset", total=len(found), entry=[BundleEntry(resource=model.model_validate(b)) for b in found])

    # fhirstarter reads the handlers' annotations to build routes: give them the concrete class.
    for handler in (create, update):
        handler.__annotations__["resource"] = model
    read.__annotations__["return"] = model




_provide(DocumentReference)
_provide(Procedure)
app.add_providers(provider)
