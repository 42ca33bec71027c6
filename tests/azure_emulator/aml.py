"""Azure ML (SDK v1) data plane: discovery, artifacts, workspace blob storage, and the model management service.

Hosts (``<region>`` is the workspace location, e.g. ``westeurope``; all reached through the MITM proxy):

* ``<region>.api.azureml.ms``: ``GET /discovery`` -> the service base URLs (no auth, as live).
* ``<region>.experiments.azureml.net``: ``POST /artifact/v2.0{ws}/artifacts/batch/metadata/{origin}/{container}``
  -> SAS ``contentUri``\\ s in the workspace storage account; ``GET .../artifacts/prefix/contentinfo/{origin}/
  {container}/{path}`` -> the artifacts under a prefix with read SAS URIs (``Model.download``).
* ``<account>.blob.core.windows.net``: List Blobs (``GET /{container}?restype=container&comp=list``, with a
  container SAS), blob ``PUT`` (single shot, or ``comp=block`` + ``comp=blocklist``),
  ``HEAD`` and ``GET`` (with ``Range``), each checked against the SAS signature handed out; reads also with a
  Microsoft Entra ID bearer token (``spec.source.uri`` models in any storage account: ``put_blob_object``).
* ``<region>.modelmanagement.azureml.net`` under ``/modelmanagement/v1.0{ws}``: ``assets``, ``models`` (register,
  list with filters and ``$skipToken`` paging, get, JSON-patch, delete), ``packages`` (image builds) and
  ``operations`` (their status).

Model ids are ``name:version``; versions count up per name and are never reused (also after a delete).

A package build (``Model.package``) "succeeds" by pushing ``<imageName>:<imageLabel>`` into the workspace's
registry in the ACR module. Its operation is ``Succeeded`` on the first GET unless steps are configured, because
``ModelPackage.wait_for_creation`` sleeps 5 s before every further poll. Test hooks:

* ``set_package_progression(state, ["NotStarted", "Running"])``: states returned by successive GETs first;
* ``fail_next_package(state, message)``: the next build ends ``Failed`` with ``error`` and a log naming *message*.

State (``state.service("aml")``): ``artifacts``, ``blobs``, ``assets``, ``models``, ``model_versions``,
``packages``, ``operations`` plus the hooks' ``progression`` and ``failures``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from . import acr
from .arm import ResourceKey, WorkspaceRecord, bearer_claims, find_workspace, now_iso, require_bearer
from .framework import EmulatorState, Request, Response, Route

DISCOVERY_HOST = r"[a-z0-9]+\.api\.azureml\.ms"
HISTORY_HOST = r"[a-z0-9]+\.experiments\.azureml\.net"
MMS_HOST = r"[a-z0-9]+\.modelmanagement\.azureml\.net"
BLOB_HOST = r"[a-z0-9]{3,24}\.blob\.core\.windows\.net"

_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
_MMS = r"(?i)/modelmanagement/v1\.0" + _WS
_ARTIFACTS = r"(?i)/artifact/v2\.0" + _WS

MODEL_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-._]{0,254}")
IMAGE_NAME = re.compile(r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?")
IMAGE_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DEFAULT_PAGE_SIZE = 255
BLOB_CONTAINER = "azureml"
_SAS_KEY = b"azure-emulator-storage-key"  # signs the SAS urls this module hands out


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


def mms_error(status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> Response:
    """MMS's ``ModelErrorResponse``; azureml turns a 404 into ``WebserviceException('ModelNotFound: ...')``."""
    request_id = str(uuid.uuid4())
    return Response(status, {
        "code": code,
        "statusCode": status,
        "message": message,
        "details": details or [],
        "correlation": {"RequestId": request_id},
    }, {"x-ms-request-id": request_id})


def blob_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}\nRequestId:{uuid.uuid4()}</Message></Error>").encode()
    return Response(status, body, {"Content-Type": "application/xml", "x-ms-error-code": code})


def _workspace(request: Request, state: EmulatorState) -> WorkspaceRecord | Response:
    """The bearer token and the workspace of a data-plane route, or the service's error."""
    if require_bearer(request) is not None:
        return mms_error(401, "Unauthorized", "The request is not authenticated: missing or expired bearer token.")
    p = request.params
    record = find_workspace(state, p["sub"], p["rg"], p["ws"])
    if record is None:
        return mms_error(404, "WorkspaceNotFound", f"Workspace '{p['ws']}' in resource group '{p['rg']}' not found.")
    return record


def _subdomain(request: Request) -> str:
    """The region or storage account in the host name (``Route`` only captures groups of the path)."""
    return request.host.split(".", 1)[0]


def _aml(state: EmulatorState) -> dict[str, Any]:
    return state.service("aml")


# --------------------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------------------


def discovery(request: Request, state: EmulatorState) -> Response:
    region = _subdomain(request)
    api = f"https://{region}.api.azureml.ms"
    history = f"https://{region}.experiments.azureml.net"
    return Response(200, {
        "api": api,
        "catalog": api,
        "experimentation": history,
        "gallery": history,
        "history": history,
        "hyperdrive": history,
        "labeling": api,
        "modelmanagement": f"https://{region}.modelmanagement.azureml.net",
        "pipelines": api,
        "studio": "https://ml.azure.com",
    })


# --------------------------------------------------------------------------------------------------------------
# Artifacts and blobs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class BlobRecord:
    data: bytes
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)  # x-ms-meta-* (SDK v2 marks finished uploads)
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def etag(self) -> str:
        return f'"0x{hashlib.md5(self.data + self.modified.isoformat().encode()).hexdigest()[:15].upper()}"'

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": self.content_type,
            "Content-MD5": self.md5,
            "ETag": self.etag,
            "Last-Modified": format_datetime(self.modified, usegmt=True),
            "Accept-Ranges": "bytes",
            "x-ms-blob-type": "BlockBlob",
            "x-ms-creation-time": format_datetime(self.created, usegmt=True),
            "x-ms-lease-status": "unlocked",
            "x-ms-lease-state": "available",
            "x-ms-server-encrypted": "true",
            "x-ms-access-tier": "Hot",
            "x-ms-access-tier-inferred": "true",
            "x-ms-version": "2019-07-07",
            **{f"x-ms-meta-{key}": value for key, value in self.metadata.items()},
        }


BlobKey = tuple[str, str, str]  # (account, container, blob name)


def _signature(account: str, container: str, blob: str) -> str:
    digest = hmac.new(_SAS_KEY, f"/{account}/{container}/{blob}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sas_url(account: str, container: str, blob: str, permissions: str = "rcw") -> str:
    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = urlencode({"sv": "2019-07-07", "sr": "b", "sp": permissions, "se": expiry,
                       "sig": _signature(account, container, blob)})
    return f"https://{account}.blob.core.windows.net/{container}/{quote(blob)}?{query}"


def _container_signature(account: str, container: str) -> str:
    digest = hmac.new(_SAS_KEY, f"/{account}/{container}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def container_sas_token(account: str, container: str, permissions: str = "racwl") -> str:
    """A container SAS (``sr=c``): what ``Datastores_ListSecrets`` hands SDK v2 for its uploads (``aml_v2.py``)."""
    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return urlencode({"sv": "2019-07-07", "sr": "c", "sp": permissions, "se": expiry,
                      "sig": _container_signature(account, container)})


def put_blob_object(state: EmulatorState, key: BlobKey, data: bytes, content_type: str = "text/plain") -> None:
    with state.lock:
        _aml(state).setdefault("blobs", {})[key] = BlobRecord(data, content_type)


def get_blob_object(state: EmulatorState, key: BlobKey) -> BlobRecord | None:
    with state.lock:
        blob: BlobRecord | None = _aml(state).get("blobs", {}).get(key)
        return blob


def batch_create_artifacts(request: Request, state: EmulatorState) -> Response:
    """Create empty artifacts and hand out one SAS upload URI per path (``BatchArtifactContentInformationDto``)."""
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    origin, container = request.params["origin"], request.params["container"]
    paths = [p.get("path") for p in (request.json() or {}).get("paths") or []]
    if not paths or not all(isinstance(p, str) and p for p in paths):
        return mms_error(400, "BadRequest", "The request must name at least one artifact path.")
    artifacts, content, created = {}, {}, now_iso()
    for path in paths:
        artifact_id = f"{origin}/{container}/{path}"
        blob = f"ExperimentRun/dcid.{container}/{path}"
        with state.lock:
            _aml(state).setdefault("artifacts", {})[artifact_id] = {
                "workspace": ws.key, "blob": (ws.storage_account, BLOB_CONTAINER, blob), "created": created,
            }
        artifacts[path] = {"artifactId": artifact_id, "origin": origin, "container": container, "path": path,
                           "etag": f'"{uuid.uuid4()}"', "createdTime": created, "dataPath": None}
        content[path] = {"contentUri": sas_url(ws.storage_account, BLOB_CONTAINER, blob), "origin": origin,
                         "container": container, "path": path}
    return Response(200, {"artifacts": artifacts, "artifactContentInformation": content, "errors": {}})


def list_artifacts_by_prefix(request: Request, state: EmulatorState) -> Response:
    """The artifacts of a container whose path starts with ``path``, each with a read SAS ``contentUri``
    (``PaginatedArtifactContentInformationDto``: ``value`` + ``continuationToken``). The route and the shapes are
    the artifact service's ``Artifact_ListSasByPrefix`` (azure-rest-api-specs
    ``specification/machinelearningservices/data-plane/Microsoft.MachineLearningServices/preview/2019-08-01/artifact.json``,
    as azureml-core 1.61 calls it: ``_restclient/operations/artifact_operations.py: list_sas_by_prefix``);
    ``Model.download`` lists a model asset's prefix with it. One page: the emulator holds few artifacts."""
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    origin, container, prefix = request.params["origin"], request.params["container"], request.params["path"]
    start = f"{origin}/{container}/"
    with state.lock:
        found = sorted((a_id[len(start):], record) for a_id, record in _aml(state).get("artifacts", {}).items()
                       if a_id.startswith(start + prefix) and record["workspace"] == ws.key)
    value = [{"contentUri": sas_url(*record["blob"], permissions="r"), "origin": origin, "container": container,
              "path": path} for path, record in found]
    return Response(200, {"value": value, "continuationToken": None})


def _blob_key(request: Request) -> BlobKey:
    return (_subdomain(request), request.params["container"], request.params["blob"])


def _check_sas(request: Request) -> Response | None:
    account, container, blob = _blob_key(request)
    container_wide = request.q("sr") == "c"  # a container SAS (aml_v2's listSecrets) covers every blob in it
    signed = _container_signature(account, container) if container_wide else _signature(account, container, blob)
    if not hmac.compare_digest(request.q("sig", "") or "", signed):
        return blob_error(403, "AuthenticationFailed",
                          "Server failed to authenticate the request. Make sure the value of Authorization header "
                          "is formed correctly including the signature.")
    return None


def _metadata(request: Request) -> dict[str, str]:
    return {k[len("x-ms-meta-"):]: v for k, v in request.headers.items() if k.startswith("x-ms-meta-")}


def put_blob(request: Request, state: EmulatorState) -> Response:
    """Put Blob, Put Block (``comp=block``), Put Block List (``comp=blocklist``) and Set Blob Metadata
    (``comp=metadata``: replaces the ``x-ms-meta-*`` pairs; azure-ai-ml marks a finished upload so)."""
    if (failure := _check_sas(request)) is not None:
        return failure
    key = _blob_key(request)
    comp = request.q("comp")
    if comp == "metadata":
        with state.lock:
            existing = get_blob_object(state, key)
            if existing is None:
                return blob_error(404, "BlobNotFound", "The specified blob does not exist.")
            existing.metadata = _metadata(request)
            existing.modified = datetime.now(timezone.utc)
        return Response(200, None, {"ETag": existing.etag, "Last-Modified": existing.headers()["Last-Modified"],
                                    "x-ms-request-server-encrypted": "true", "x-ms-version": "2019-07-07"})
    if comp == "block":
        with state.lock:
            _aml(state).setdefault("blocks", {}).setdefault(key, {})[request.q("blockid", "")] = request.body
        return Response(201, None, {"x-ms-request-server-encrypted": "true"})
    if comp == "blocklist":
        with state.lock:
            staged = _aml(state).get("blocks", {}).pop(key, {})
        ids = re.findall(r"<(?:Latest|Uncommitted|Committed)>([^<]*)</", request.body.decode())
        if any(i not in staged for i in ids):
            return blob_error(400, "InvalidBlockList", "The specified block list is invalid.")
        data = b"".join(staged[i] for i in ids)
        content_type = request.headers.get("x-ms-blob-content-type", "application/octet-stream")
    else:
        if request.headers.get("x-ms-blob-type") != "BlockBlob":
            return blob_error(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request "
                              "is not specified: x-ms-blob-type (only BlockBlob is emulated).")
        md5 = request.headers.get("content-md5")
        if md5 and md5 != base64.b64encode(hashlib.md5(request.body).digest()).decode():
            return blob_error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the "
                              "MD5 value calculated by the server.")
        data = request.body
        content_type = request.headers.get("x-ms-blob-content-type") or request.headers.get(
            "content-type", "application/octet-stream")
    put_blob_object(state, key, data, content_type)
    blob = get_blob_object(state, key)
    assert blob is not None
    blob.metadata = _metadata(request)
    return Response(201, None, {"ETag": blob.etag, "Last-Modified": blob.headers()["Last-Modified"],
                                "Content-MD5": blob.md5, "x-ms-request-server-encrypted": "true",
                                "x-ms-version": "2019-07-07", "x-ms-request-id": str(uuid.uuid4())})


def _range(request: Request, size: int) -> tuple[int, int] | None | Response:
    """The ``(start, end)`` asked for by ``Range``/``x-ms-range``; ``None`` for the whole blob."""
    header = request.headers.get("x-ms-range") or request.headers.get("range")
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", (header or "").strip())
    if not m:
        return None
    start = int(m[1])
    end = min(int(m[2]) if m[2] else size - 1, size - 1)
    if start >= size:
        return blob_error(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
    return start, end


def _check_read_access(request: Request) -> Response | None:
    """A read is authorised by the SAS signature this module handed out, or, without a SAS, by a Microsoft Entra
    ID bearer token: "Authorize access to blobs using Microsoft Entra ID" (learn.microsoft.com/azure/storage/
    blobs/authorize-access-azure-active-directory; REST: learn.microsoft.com/rest/api/storageservices/
    authorize-with-azure-active-directory) requires ``Authorization: Bearer`` with a token for
    ``https://storage.azure.com/`` and ``x-ms-version`` 2017-11-09 or later, and answers 401
    ``InvalidAuthenticationInfo`` otherwise. Role assignments (Storage Blob Data Reader) are not emulated."""
    if request.q("sig") is not None or not request.headers.get("authorization"):
        return _check_sas(request)
    claims = bearer_claims(request)
    if claims is None or "storage.azure.com" not in str(claims.get("aud", "")):
        return blob_error(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please "
                          "refer to the information in the www-authenticate header.")
    version = request.headers.get("x-ms-version", "")
    if version < "2017-11-09":
        return blob_error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                          "format (x-ms-version: Microsoft Entra ID authorization needs 2017-11-09 or later).")
    return None


def get_blob(request: Request, state: EmulatorState) -> Response:
    """``GET`` and ``HEAD`` (the server drops the body of a HEAD but keeps its ``Content-Length``)."""
    if (failure := _check_read_access(request)) is not None:
        return failure
    blob = get_blob_object(state, _blob_key(request))
    if blob is None:
        return blob_error(404, "BlobNotFound", "The specified blob does not exist.")
    wanted = _range(request, len(blob.data)) if request.method == "GET" else None
    if isinstance(wanted, Response):
        return wanted
    if wanted is None:
        return Response(200, blob.data, blob.headers())
    start, end = wanted
    headers = {**blob.headers(), "Content-Range": f"bytes {start}-{end}/{len(blob.data)}"}
    return Response(206, blob.data[start:end + 1], headers)


LIST_PAGE = 5000  # List Blobs: "If maxresults is not specified ... the server will return up to 5,000 items"


def _list_item(name: str, blob: BlobRecord, metadata: bool) -> str:
    meta = "".join(f"<{key}>{escape(value)}</{key}>" for key, value in sorted(blob.metadata.items()))
    return (f"<Blob><Name>{escape(name)}</Name><Properties>"
            f"<Creation-Time>{format_datetime(blob.created, usegmt=True)}</Creation-Time>"
            f"<Last-Modified>{format_datetime(blob.modified, usegmt=True)}</Last-Modified>"
            f"<Etag>{blob.etag}</Etag><Content-Length>{len(blob.data)}</Content-Length>"
            f"<Content-Type>{escape(blob.content_type)}</Content-Type><Content-MD5>{blob.md5}</Content-MD5>"
            "<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>"
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            "<ServerEncrypted>true</ServerEncrypted></Properties>"
            + (f"<Metadata>{meta}</Metadata>" if metadata else "") + "</Blob>")


def list_blobs(request: Request, state: EmulatorState) -> Response:
    """List Blobs (learn.microsoft.com/rest/api/storageservices/list-blobs, version 2019-07-07 as the other blob
    answers here): ``GET /{container}?restype=container&comp=list`` with ``prefix``, ``delimiter`` (names past it
    are rolled up into one ``BlobPrefix``), ``marker``/``maxresults`` (``NextMarker`` while more remain; up to 5,000
    per page), ``include=metadata``; blobs in lexical order, an ``EnumerationResults`` XML body. Authorised by a
    container SAS (``sr=c``) with list permission (``sp`` holds ``l``): "Service SAS ... List Blobs: container
    only, permission l" (learn.microsoft.com/rest/api/storageservices/create-service-sas). A container no blob
    was ever put in lists nothing."""
    account, container = _subdomain(request), request.params["container"]
    if request.q("restype") != "container" or request.q("comp") != "list":
        return blob_error(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in "
                          "the request URI is invalid (only restype=container&comp=list is emulated here).")
    if request.q("sr") != "c" or "l" not in (request.q("sp") or "") or not hmac.compare_digest(
            request.q("sig", "") or "", _container_signature(account, container)):
        return blob_error(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this "
                          "operation using this permission.")
    prefix, delimiter = request.q("prefix") or "", request.q("delimiter") or ""
    try:
        size = min(int(request.q("maxresults") or LIST_PAGE), LIST_PAGE)
    except ValueError:
        return blob_error(400, "InvalidQueryParameterValue", "maxresults must be an integer.")
    metadata = "metadata" in (request.q("include") or "").split(",")
    with state.lock:
        names = sorted((name, blob) for (acct, cont, name), blob in _aml(state).get("blobs", {}).items()
                       if (acct, cont) == (account, container) and name.startswith(prefix))
    items: list[tuple[str, bool]] = []  # (name, rolled up into a BlobPrefix)
    for name, _ in names:
        cut = name.find(delimiter, len(prefix)) if delimiter else -1
        item = (name[:cut + len(delimiter)], True) if cut >= 0 else (name, False)
        if item not in items:
            items.append(item)
    marker = request.q("marker") or ""
    items = [item for item in items if item[0] > marker]
    page, rest = items[:size], items[size:]
    by_name = dict(names)
    body = "".join(f"<BlobPrefix><Name>{escape(name)}</Name></BlobPrefix>" if rolled
                   else _list_item(name, by_name[name], metadata) for name, rolled in page)
    next_marker = page[-1][0] if rest else ""
    xml = ('<?xml version="1.0" encoding="utf-8"?>'
           f'<EnumerationResults ServiceEndpoint="https://{escape(request.host)}/" ContainerName="{escape(container)}">'
           f"<Prefix>{escape(prefix)}</Prefix>" + (f"<Marker>{escape(marker)}</Marker>" if marker else "")
           + f"<MaxResults>{size}</MaxResults>" + (f"<Delimiter>{escape(delimiter)}</Delimiter>" if delimiter else "")
           + f"<Blobs>{body}</Blobs><NextMarker>{escape(next_marker)}</NextMarker></EnumerationResults>")
    return Response(200, xml.encode(), {"Content-Type": "application/xml", "x-ms-version": "2019-07-07",
                                        "x-ms-request-id": str(uuid.uuid4())})


# --------------------------------------------------------------------------------------------------------------
# Assets
# --------------------------------------------------------------------------------------------------------------


def _uploaded(state: EmulatorState, ws: WorkspaceRecord, prefix: str) -> bool:
    with state.lock:
        artifacts = _aml(state).get("artifacts", {})
        return any(a_id.startswith(prefix) and a["workspace"] == ws.key for a_id, a in artifacts.items())


def create_asset(request: Request, state: EmulatorState) -> Response:
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    body = request.json() or {}
    prefixes = [a.get("prefix") for a in body.get("artifacts") or []]
    if not body.get("name") or not prefixes:
        return mms_error(400, "BadRequest", "An asset needs a name and at least one artifact prefix.")
    missing = [p for p in prefixes if not isinstance(p, str) or not _uploaded(state, ws, p)]
    if missing:
        return mms_error(400, "ArtifactNotFound", f"No uploaded artifacts under the prefixes {missing}.")
    asset = {
        "id": uuid.uuid4().hex,
        "name": body["name"],
        "type": body.get("type"),
        "description": body.get("description"),
        "artifacts": [{"id": None, "prefix": p} for p in prefixes],
        "kvTags": body.get("kvTags") or {},
        "properties": body.get("properties") or {},
        "runid": body.get("runid"),
        "meta": body.get("meta") or {},
        "createdTime": now_iso(),
    }
    with state.lock:
        _aml(state).setdefault("assets", {})[asset["id"]] = {"workspace": ws.key, "json": asset}
    return Response(200, asset)


def get_asset(request: Request, state: EmulatorState) -> Response:
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    with state.lock:
        asset = _aml(state).get("assets", {}).get(request.params["id"])
    if asset is None or asset["workspace"] != ws.key:
        return mms_error(404, "AssetNotFound", f"Asset {request.params['id']} not found.")
    return Response(200, asset["json"])


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ModelRecord:
    name: str
    version: int
    url: str
    description: str | None = None
    kv_tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    mime_type: str = "application/json"
    framework: str = "Custom"
    framework_version: str | None = None
    unpack: bool = False
    datasets: list[Any] = field(default_factory=list)
    experiment_name: str | None = None
    run_id: str | None = None
    sample_input_data: str | None = None
    sample_output_data: str | None = None
    resource_requirements: Any = None
    archived: bool = False  # SDK v2's isArchived (``aml_v2.py``); v1 has no such state
    created: str = field(default_factory=now_iso)
    modified: str = field(default_factory=now_iso)

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The MMS ``Model`` (``_restclient/models/model.py``) as ``azureml.core.Model`` reads it."""
        return {
            "id": self.id, "name": self.name, "version": self.version, "url": self.url,
            "mimeType": self.mime_type, "framework": self.framework, "frameworkVersion": self.framework_version,
            "description": self.description, "kvTags": dict(self.kv_tags), "properties": dict(self.properties),
            "unpack": self.unpack, "datasets": list(self.datasets), "runId": self.run_id,
            "experimentName": self.experiment_name, "createdTime": self.created, "modifiedTime": self.modified,
            "parentModelId": None, "derivedModelIds": None,
            "sampleInputData": self.sample_input_data, "sampleOutputData": self.sample_output_data,
            "resourceRequirements": self.resource_requirements,
            "createdBy": {"userObjectId": "00000000-0000-4000-8000-0000000000e1",
                          "userTenantId": "72f988bf-0000-4000-8000-00000000e7e7", "userName": "emulator"},
        }


def _models(state: EmulatorState, ws: WorkspaceRecord) -> dict[str, ModelRecord]:
    """The workspace's models by id (caller holds the lock)."""
    models: dict[str, ModelRecord] = _aml(state).setdefault("models", {}).setdefault(ws.key, {})
    return models


def models_in(state: EmulatorState, ws: WorkspaceRecord) -> list[ModelRecord]:
    with state.lock:
        return list(_models(state, ws).values())


def _asset_id(url: Any) -> str | None:
    m = re.fullmatch(r"aml://asset/([0-9a-f]{32})", url) if isinstance(url, str) else None
    return m[1] if m else None


def register_model(request: Request, state: EmulatorState) -> Response:
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    body = request.json() or {}
    name = body.get("name")
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        return mms_error(400, "InvalidModelName", f"Model name '{name}' is invalid: it must match "
                         r"^[a-zA-Z0-9][a-zA-Z0-9\-\._]{0,254}$.")
    asset_id = _asset_id(body.get("url"))
    with state.lock:
        asset = _aml(state).get("assets", {}).get(asset_id or "")
    if asset is None or asset["workspace"] != ws.key:
        return mms_error(400, "AssetNotFound", f"The model url '{body.get('url')}' does not name an asset.")
    for field_name in ("kvTags", "properties"):
        if not isinstance(body.get(field_name) or {}, dict):
            return mms_error(400, "BadRequest", f"'{field_name}' must be a map of strings.")
    with state.lock:
        counters = _aml(state).setdefault("model_versions", {})
        version = counters.get((ws.key, name), 0) + 1
        counters[(ws.key, name)] = version
        model = ModelRecord(
            name, version, body["url"], body.get("description"), dict(body.get("kvTags") or {}),
            dict(body.get("properties") or {}), body.get("mimeType") or "application/json",
            body.get("framework") or "Custom", body.get("frameworkVersion"), bool(body.get("unpack")),
            list(body.get("datasets") or []), body.get("experimentName"), body.get("runId"),
            body.get("sampleInputData"), body.get("sampleOutputData"), body.get("resourceRequirements"),
        )
        _models(state, ws)[model.id] = model
    return Response(200, model.to_json())


def _filter_pairs(raw: str | None) -> list[tuple[str, str | None]]:
    """``"k=v,k2"`` -> ``[("k", "v"), ("k2", None)]`` (a bare key asks only for presence)."""
    pairs: list[tuple[str, str | None]] = []
    for item in (raw or "").split(","):
        if item:
            key, sep, value = item.partition("=")
            pairs.append((key, value if sep else None))
    return pairs


def _matches(values: dict[str, str], wanted: list[tuple[str, str | None]]) -> bool:
    return all(k in values and (v is None or values[k] == v) for k, v in wanted)


_ORDERINGS = {
    "createdatdesc": (lambda m: (m.created, m.version), True),
    "createdatasc": (lambda m: (m.created, m.version), False),
    "updatedatdesc": (lambda m: (m.modified, m.version), True),
    "updatedatasc": (lambda m: (m.modified, m.version), False),
}


def _query_models(state: EmulatorState, ws: WorkspaceRecord, request: Request) -> list[ModelRecord] | Response:
    name = request.q("name")
    tags, props = _filter_pairs(request.q("tags")), _filter_pairs(request.q("properties"))
    if request.q("tag"):
        tags.append((request.q("tag") or "", None))
    chosen = [
        m for m in models_in(state, ws)
        if (name is None or m.name == name)
        and _matches(m.kv_tags, tags)
        and _matches(m.properties, props)
        and (request.q("framework") is None or m.framework == request.q("framework"))
        and (request.q("runId") is None or m.run_id == request.q("runId"))
        and (request.q("description") is None or m.description == request.q("description"))
    ]
    # Without orderBy the newest come first: Model(ws, name) reads "latest" from the first item of count=1.
    order_by = (request.q("orderBy") or "CreatedAtDesc").lower()
    if order_by not in _ORDERINGS:
        return mms_error(400, "InvalidOrderBy", f"orderBy '{request.q('orderBy')}' is not supported.")
    key, reverse = _ORDERINGS[order_by]
    chosen.sort(key=key, reverse=reverse)
    if (request.q("latestVersionOnly") or "").lower() == "true":
        newest = {m.name: m for m in sorted(chosen, key=lambda m: m.version)}
        chosen = [m for m in chosen if newest[m.name] is m]
    return chosen


def list_models(request: Request, state: EmulatorState) -> Response:
    """``GET models``: filters ``name``, ``tags``, ``properties``, ``framework``, ``runId``, ``latestVersionOnly``;
    pages of ``count`` items; ``$skipToken`` is the offset, echoed in ``nextLink`` with the other parameters."""
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    chosen = _query_models(state, ws, request)
    if isinstance(chosen, Response):
        return chosen
    try:
        count = int(request.q("count") or DEFAULT_PAGE_SIZE)
        offset = int(request.q("$skipToken") or 0)
    except ValueError:
        return mms_error(400, "BadRequest", "count and $skipToken must be integers.")
    if count < 1 or offset < 0:
        return mms_error(400, "BadRequest", "count must be positive and $skipToken non-negative.")
    page = chosen[offset:offset + count]
    body: dict[str, Any] = {"value": [m.to_json() for m in page]}
    if offset + count < len(chosen):
        query = {k: v[0] for k, v in request.query.items() if k != "$skipToken"}
        query["$skipToken"] = str(offset + count)
        body["nextLink"] = f"https://{request.host}{quote(request.path)}?{urlencode(query, safe='$')}"
    return Response(200, body)


def _model_or_error(request: Request, state: EmulatorState) -> tuple[WorkspaceRecord, ModelRecord] | Response:
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    model_id = request.params["id"]
    with state.lock:
        model = _models(state, ws).get(model_id)
    if model is None:
        return mms_error(404, "ModelNotFound", f"Model with id {model_id} not found in provided workspace")
    return ws, model


def get_model(request: Request, state: EmulatorState) -> Response:
    found = _model_or_error(request, state)
    return found if isinstance(found, Response) else Response(200, found[1].to_json())


class PatchError(ValueError):
    pass


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PatchError(f"The value for {what} must be a map of strings.")
    return dict(value)


def _patch_map(current: dict[str, str], op: str, sub_key: str | None, value: Any, what: str,
               immutable: bool) -> dict[str, str]:
    """Apply one operation to ``kvTags`` (mutable) or ``properties`` (add-only)."""
    if sub_key is None:
        if op == "remove":
            if immutable:
                raise PatchError(f"{what} cannot be removed.")
            return {}
        new = _string_map(value, what)
        if immutable:
            changed = [k for k in new if k in current and current[k] != new[k]]
            if changed or op != "add":
                raise PatchError(f"{what} are immutable; existing keys cannot change: {changed or sorted(new)}.")
            return {**current, **new}
        return new if op == "replace" else {**current, **new}
    if op == "remove":
        if immutable or sub_key not in current:
            raise PatchError(f"Cannot remove {what}/{sub_key}.")
        return {k: v for k, v in current.items() if k != sub_key}
    if not isinstance(value, str):
        raise PatchError(f"The value of {what}/{sub_key} must be a string.")
    if immutable and sub_key in current and current[sub_key] != value:
        raise PatchError(f"{what}/{sub_key} is immutable.")
    return {**current, sub_key: value}


_SCALAR_FIELDS = {
    "/description": "description",
    "/sampleInputData": "sample_input_data",
    "/sampleOutputData": "sample_output_data",
    "/resourceRequirements": "resource_requirements",
    "/datasets": "datasets",
}


def apply_patch(model: ModelRecord, operations: Any) -> None:
    """Apply a JSON Patch (RFC 6902 subset) atomically to a copy-safe model; raises ``PatchError``."""
    if not isinstance(operations, list) or not operations:
        raise PatchError("The body must be a non-empty JSON Patch array.")
    staged = {"kv_tags": dict(model.kv_tags), "properties": dict(model.properties)}
    scalars: dict[str, Any] = {}
    for operation in operations:
        if not isinstance(operation, dict):
            raise PatchError("Every patch operation must be an object.")
        op, path, value = operation.get("op"), operation.get("path"), operation.get("value")
        if op not in ("add", "replace", "remove"):
            raise PatchError(f"Unsupported patch operation '{op}'.")
        head, _, sub_key = str(path).lstrip("/").partition("/")
        if head == "kvTags":
            staged["kv_tags"] = _patch_map(staged["kv_tags"], op, sub_key or None, value, "kvTags", False)
        elif head == "properties":
            staged["properties"] = _patch_map(staged["properties"], op, sub_key or None, value, "properties", True)
        elif path in _SCALAR_FIELDS:
            if path == "/datasets" and op != "add":
                raise PatchError("Datasets can only be added.")
            scalars[_SCALAR_FIELDS[path]] = None if op == "remove" else value
        else:
            raise PatchError(f"The path '{path}' cannot be patched.")
    model.kv_tags, model.properties = staged["kv_tags"], staged["properties"]
    for attribute, value in scalars.items():
        if attribute == "datasets":
            model.datasets = model.datasets + list(value or [])
        else:
            setattr(model, attribute, value)
    model.modified = now_iso()


def patch_model(request: Request, state: EmulatorState) -> Response:
    found = _model_or_error(request, state)
    if isinstance(found, Response):
        return found
    _, model = found
    try:
        operations = request.json()
        with state.lock:
            apply_patch(model, operations)
    except (PatchError, ValueError) as exc:
        return mms_error(400, "BadRequest", f"Invalid patch: {exc}")
    return Response(200, model.to_json())


def delete_model(request: Request, state: EmulatorState) -> Response:
    found = _model_or_error(request, state)
    if isinstance(found, Response):
        return found
    ws, model = found
    with state.lock:
        _models(state, ws).pop(model.id, None)
    return Response(200)


# --------------------------------------------------------------------------------------------------------------
# Packages and operations
# --------------------------------------------------------------------------------------------------------------


@dataclass
class PackageOperation:
    id: str
    workspace: ResourceKey
    registry: str
    image_name: str
    image_label: str
    pending: list[str]  # states still to be shown before the terminal one
    failure: str | None  # the build error, when this build is meant to fail
    log_blob: BlobKey
    created: str = field(default_factory=now_iso)
    state: str = "NotStarted"
    ended: str | None = None
    login_server: str = ""  # the registry's, as ARM reports it (not always <name>.azurecr.io)

    @property
    def location(self) -> str:
        host = self.login_server or f"{self.registry.lower()}.azurecr.io"
        return f"{host}/{self.image_name}:{self.image_label}"


def set_package_progression(state: EmulatorState, states: list[str]) -> None:
    """Make later package operations show *states* (e.g. ``["NotStarted", "Running"]``) before finishing.

    Each extra state costs the SDK one 5 s sleep in ``wait_for_creation``.
    """
    with state.lock:
        _aml(state)["progression"] = list(states)


def fail_next_package(state: EmulatorState, message: str = "Docker build failed: pip install exited with 1") -> None:
    """Queue a failure: the next package build ends ``Failed`` and pushes nothing."""
    with state.lock:
        _aml(state).setdefault("failures", []).append(message)


def packages_submitted(state: EmulatorState) -> list[dict[str, Any]]:
    """What ``POST packages`` received, in order (model ids, uploaded file names, image, environment)."""
    with state.lock:
        return list(_aml(state).get("packages", []))


def _artifact_for(state: EmulatorState, ws: WorkspaceRecord, url: Any) -> str | None:
    """The uploaded artifact an ``aml://artifact/<origin>/<container>/<path>`` url names."""
    if not isinstance(url, str) or not url.startswith("aml://artifact/"):
        return None
    artifact_id = url[len("aml://artifact/"):]
    with state.lock:
        artifact = _aml(state).get("artifacts", {}).get(artifact_id)
    return artifact_id if artifact and artifact["workspace"] == ws.key else None


def _validate_package(state: EmulatorState, ws: WorkspaceRecord, body: dict[str, Any]) -> Response | None:
    image_request = body.get("imageRequest")
    if not isinstance(image_request, dict):
        return mms_error(400, "BadRequest", "The package request needs an imageRequest.")
    if body.get("packageType", "DockerImage") != "DockerImage":
        return mms_error(400, "NotSupportedByEmulator",
                         f"packageType '{body.get('packageType')}' is not emulated (only DockerImage).")
    model_ids = image_request.get("modelIds") or []
    with state.lock:
        missing = [m for m in model_ids if m not in _models(state, ws)]
    if missing:
        return mms_error(404, "ModelNotFound", f"Models {missing} not found in provided workspace")
    if not isinstance(image_request.get("environment"), dict):
        return mms_error(400, "BadRequest", "An environment is required to package models.")
    assets = image_request.get("assets") or []
    unknown = [a.get("url") for a in assets if _artifact_for(state, ws, a.get("url")) is None]
    if unknown:
        return mms_error(400, "AssetNotFound", f"Assets not uploaded: {unknown}")
    if image_request.get("driverProgram") not in {a.get("id") for a in assets}:
        return mms_error(400, "BadRequest", "driverProgram must name one of the assets.")
    name, label = body.get("imageName"), body.get("imageLabel")
    if name is not None and not (isinstance(name, str) and IMAGE_NAME.fullmatch(name) and len(name) <= 255):
        return mms_error(400, "InvalidImageName", f"Image name '{name}' is invalid: lower-case letters, digits, "
                         "'.' and '-' only, starting and ending with a letter or digit.")
    if label is not None and not (isinstance(label, str) and IMAGE_LABEL.fullmatch(label)):
        return mms_error(400, "InvalidImageLabel", f"Image label '{label}' is not a valid Docker tag.")
    return None


def create_package(request: Request, state: EmulatorState) -> Response:
    """``POST packages`` -> 202 + ``Operation-Location`` (the SDK keeps only its last segment)."""
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    body = request.json() or {}
    if (failure := _validate_package(state, ws, body)) is not None:
        return failure
    image_request = body["imageRequest"]
    op_id = str(uuid.uuid4())
    with state.lock:
        aml = _aml(state)
        failures: list[str] = aml.setdefault("failures", [])
        operation = PackageOperation(
            op_id, ws.key, ws.registry_name, body.get("imageName") or "package",
            body.get("imageLabel") or uuid.uuid4().hex[:16], list(aml.get("progression", [])),
            failures.pop(0) if failures else None,
            (ws.storage_account, BLOB_CONTAINER, f"ImageLogs/{op_id}/build.log"),
        )
        registry = acr.find_registry(state, ws.registry_name)
        operation.login_server = registry.login_server if registry is not None else ""
        aml.setdefault("operations", {})[op_id] = operation
        # The service builds whether or not anyone polls: with no states to show (the default), the build
        # has ended by the time anyone can look, pushed image included. With a progression set, each poll
        # shows the next state (a simplification that lets tests watch the states go by).
        aml.setdefault("packages", []).append({
            "operationId": op_id,
            "modelIds": list(image_request.get("modelIds") or []),
            "files": [a.get("id") for a in image_request.get("assets") or []],
            "driverProgram": image_request.get("driverProgram"),
            "environment": (image_request.get("environment") or {}).get("name"),
            "imageName": operation.image_name,
            "imageLabel": operation.image_label,
        })
    put_blob_object(state, operation.log_blob, f"Package {op_id} queued.\n".encode())
    if not operation.pending:
        with state.lock:
            _advance(state, operation)
    location = f"{_mms_base(request)}/operations/{op_id}"
    return Response(202, None, {"Operation-Location": location})


def _mms_base(request: Request) -> str:
    p = request.params
    return (f"https://{request.host}/modelmanagement/v1.0/subscriptions/{p['sub']}/resourceGroups/{p['rg']}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{p['ws']}")


def _advance(state: EmulatorState, operation: PackageOperation) -> None:
    """Move the operation one state on; reaching the end, push the image (or record the failure)."""
    if operation.state in ("Succeeded", "Failed"):
        return
    if operation.pending:
        operation.state = operation.pending.pop(0)
        return
    log = get_blob_object(state, operation.log_blob)
    lines = (log.data if log else b"").decode()
    if operation.failure is not None:
        operation.state = "Failed"
        lines += f"Building image {operation.location}\nERROR: {operation.failure}\n"
    else:
        acr.push_image(state, operation.registry, operation.image_name, operation.image_label)
        operation.state = "Succeeded"
        lines += f"Building image {operation.location}\nPushed {operation.location}\n"
    operation.ended = now_iso()
    put_blob_object(state, operation.log_blob, lines.encode())


def _operation_json(operation: PackageOperation) -> dict[str, Any]:
    account, container, blob = operation.log_blob
    body: dict[str, Any] = {
        "id": operation.id,
        "operationType": "PackageDockerImage",
        "state": operation.state,
        "createdTime": operation.created,
        "endTime": operation.ended,
        "operationLog": sas_url(account, container, blob, "r"),
    }
    if operation.state == "Succeeded":
        body["resourceLocation"] = operation.location
    if operation.state == "Failed":
        body["error"] = {"code": "PackageBuildFailed", "statusCode": 400,
                         "message": f"Package creation failed: {operation.failure}. See the operation log.",
                         "details": []}
    return body


def get_operation(request: Request, state: EmulatorState) -> Response:
    ws = _workspace(request, state)
    if isinstance(ws, Response):
        return ws
    with state.lock:
        operation: PackageOperation | None = _aml(state).get("operations", {}).get(request.params["op"])
        if operation is None or operation.workspace != ws.key:
            return mms_error(404, "OperationNotFound", f"Operation {request.params['op']} not found.")
        _advance(state, operation)
        return Response(200, _operation_json(operation))


ROUTES: list[Route] = [
    Route("GET", DISCOVERY_HOST, r"/discovery", discovery),
    Route("POST", HISTORY_HOST, _ARTIFACTS + r"/artifacts/batch/metadata/(?P<origin>[^/]+)/(?P<container>[^/]+)",
          batch_create_artifacts),
    Route("GET", HISTORY_HOST,
          _ARTIFACTS + r"/artifacts/prefix/contentinfo/(?P<origin>[^/]+)/(?P<container>[^/]+)/(?P<path>.*)",
          list_artifacts_by_prefix),
    Route("GET", BLOB_HOST, r"/(?P<container>[^/]+)/?", list_blobs),
    Route("PUT", BLOB_HOST, r"/(?P<container>[^/]+)/(?P<blob>.+)", put_blob),
    Route("HEAD", BLOB_HOST, r"/(?P<container>[^/]+)/(?P<blob>.+)", get_blob),
    Route("GET", BLOB_HOST, r"/(?P<container>[^/]+)/(?P<blob>.+)", get_blob),
    Route("POST", MMS_HOST, _MMS + r"/assets", create_asset),
    Route("GET", MMS_HOST, _MMS + r"/assets/(?P<id>[^/]+)", get_asset),
    Route("POST", MMS_HOST, _MMS + r"/models", register_model),
    Route("GET", MMS_HOST, _MMS + r"/models", list_models),
    Route("GET", MMS_HOST, _MMS + r"/models/(?P<id>[^/]+)", get_model),
    Route("PATCH", MMS_HOST, _MMS + r"/models/(?P<id>[^/]+)", patch_model),
    Route("DELETE", MMS_HOST, _MMS + r"/models/(?P<id>[^/]+)", delete_model),
    Route("POST", MMS_HOST, _MMS + r"/packages", create_package),
    Route("GET", MMS_HOST, _MMS + r"/operations/(?P<op>[^/]+)", get_operation),
]
