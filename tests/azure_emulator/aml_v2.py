"""Azure ML (SDK v2, ``azure-ai-ml``) routes: model containers and versions, and the default datastore.

SDK v2 reaches Azure ML through ARM (``management.azure.com``), not through the v1 data-plane hosts:
the workspace's models are the ARM resources ``{ws}/models/{name}`` (containers) and
``{ws}/models/{name}/versions/{version}``, defined in azure-rest-api-specs
``specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/preview/2023-08-01-preview/mfe.json``
(``ModelContainers_*``, ``ModelVersions_*``; the api-version azure-ai-ml 1.35 sends for them), and the
files go to the workspace's storage account through the default datastore
(``Datastores_Get``/``Datastores_ListSecrets``, api-version 2024-10-01-preview as azure-ai-ml 1.35 sends it).

The requests served are the ones azure-ai-ml 1.35 was recorded sending against this emulator
(``MLClient.models.create_or_update/list/get/archive``):

* ``GET {ws}/models`` (containers; ``$skip`` paging, ``listViewType``), ``GET {ws}/models/{name}`` (the
  SDK reads ``latestVersion`` to pick the next version number), ``PUT {ws}/models/{name}``
  (``ModelContainers_CreateOrUpdate``: a container's description, tags and properties; the product writes an
  ownership marker into its tags);
* ``GET {ws}/models/{name}/versions`` (``$orderBy``, ``$top``, ``$skip``, ``tags``, ``listViewType``),
  ``GET``/``PUT {ws}/models/{name}/versions/{version}``;
* ``GET {ws}/datastores/workspaceblobstore``, ``POST .../listSecrets`` (``expirableSecret``: a SAS token for
  the datastore's container), then the blob calls of ``aml.py`` (``HEAD`` of the "indicator" blob, ``PUT``,
  ``PUT ?comp=metadata``) with that container SAS.

**One model store with SDK v1.** In Azure ML a workspace has one model registry: a version registered by
azureml-core is listed by azure-ai-ml with the same name, version number, tags and properties (v1's
``kvTags`` are v2's ``tags``), and the reverse. The routes here read and write ``aml.py``'s
``ModelRecord``\\ s, so an environment switched from ``ml.sdk: v1`` to ``v2`` sees what v1 registered.

Versions are strings in v2 and integers in v1: a v2 version that is not an integer is refused (400),
because the v1 routes could not show it (the SDK's auto-increment always sends integers).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from . import aml
from .arm import WorkspaceRecord, find_workspace, now_iso, require_api_version, require_bearer
from .framework import EmulatorState, Request, Response, Route, error

ARM_HOST = r"management\.azure\.com"
_WS = (
    r"(?i)/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
DEFAULT_DATASTORE = "workspaceblobstore"
PAGE_SIZE = 100  # what the service pages by when $top is not given (mfe.json does not say; 100 as ARM lists do)
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}")


def _guarded(request: Request, state: EmulatorState) -> WorkspaceRecord | Response:
    if (failure := require_api_version(request) or require_bearer(request)) is not None:
        return failure
    p = request.params
    record = find_workspace(state, p["sub"], p["rg"], p["ws"])
    if record is None:
        return error(404, "ResourceNotFound",
                     f"The Resource 'Microsoft.MachineLearningServices/workspaces/{p['ws']}' under resource group "
                     f"'{p['rg']}' was not found.")
    return record


def _not_found(what: str) -> Response:
    return error(404, "UserError", f"{what} not found", **{"x-ms-error-code": "UserError"})


# --------------------------------------------------------------------------------------------------------------
# Shapes (mfe.json 2023-08-01-preview: ModelContainerResource, ModelVersionResource)
# --------------------------------------------------------------------------------------------------------------


def _system_data(created: str, modified: str) -> dict[str, Any]:
    return {"createdAt": created, "createdBy": "emulator", "createdByType": "User",
            "lastModifiedAt": modified, "lastModifiedBy": "emulator", "lastModifiedByType": "User"}


def _version_json(ws: WorkspaceRecord, model: aml.ModelRecord) -> dict[str, Any]:
    return {
        "id": f"{ws.arm_id}/models/{model.name}/versions/{model.version}",
        "name": str(model.version),
        "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
        "systemData": _system_data(model.created, model.modified),
        "properties": {
            "description": model.description,
            "tags": dict(model.kv_tags),
            "properties": dict(model.properties),
            "isArchived": model.archived,
            "isAnonymous": False,
            "modelType": "custom_model",
            "modelUri": model.url,
            "flavors": {},
            "jobName": model.run_id,
            "provisioningState": "Succeeded",
            "stage": "Development",
        },
    }


def _container_records(state: EmulatorState) -> dict[tuple[Any, str], dict[str, Any]]:
    """What a container carries of its own (``AssetContainer``: description, tags, properties, isArchived, and
    when it was created), by (workspace key, name); a container made implicitly by a version's ``PUT`` has
    none of it until a container ``PUT``."""
    records: dict[tuple[Any, str], dict[str, Any]] = aml._aml(state).setdefault("model_containers", {})
    return records


def _container_json(ws: WorkspaceRecord, name: str, versions: list[aml.ModelRecord],
                    state: EmulatorState) -> dict[str, Any]:
    with state.lock:  # a number is never given twice, also after a delete in v1
        issued = aml._aml(state).get("model_versions", {}).get((ws.key, name), 0)
        own = dict(_container_records(state).get((ws.key, name), {}))
    newest = max(versions, key=lambda m: m.version) if versions else None
    oldest = min(versions, key=lambda m: m.version) if versions else None
    created = own.get("created") or (oldest.created if oldest else now_iso())
    modified = max(filter(None, [own.get("modified"), newest.modified if newest else None]), default=created)
    return {
        "id": f"{ws.arm_id}/models/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/models",
        "systemData": _system_data(created, modified),
        "properties": {
            "description": own.get("description"), "tags": dict(own.get("tags") or {}),
            "properties": dict(own.get("properties") or {}), "isArchived": bool(own.get("isArchived", False)),
            "latestVersion": str(newest.version) if newest else None,
            "nextVersion": str(max(issued, newest.version if newest else 0) + 1),
            "provisioningState": "Succeeded",
        },
    }


def _versions_of(state: EmulatorState, ws: WorkspaceRecord, name: str) -> list[aml.ModelRecord]:
    return [m for m in aml.models_in(state, ws) if m.name == name]


def _page(request: Request, items: list[dict[str, Any]], size: int) -> Response:
    """``{"value": [...], "nextLink": ...}`` with ``$skip`` as the continuation (``x-ms-pageable``)."""
    try:
        skip = int(request.q("$skip") or 0)
    except ValueError:
        return error(400, "BadRequest", "$skip must be an integer.")
    page = items[skip:skip + size]
    body: dict[str, Any] = {"value": page}
    if skip + size < len(items):
        query = {k: v[0] for k, v in request.query.items() if k != "$skip"}
        query["$skip"] = str(skip + size)
        body["nextLink"] = f"https://{request.host}{quote(request.path)}?{urlencode(query, safe='$')}"
    return Response(200, body)


def _active(request: Request, model: aml.ModelRecord) -> bool:
    view = (request.q("listViewType") or "ActiveOnly").lower()
    return view == "all" or (model.archived if view == "archivedonly" else not model.archived)


# --------------------------------------------------------------------------------------------------------------
# Containers and versions
# --------------------------------------------------------------------------------------------------------------


def _container_names(state: EmulatorState, ws: WorkspaceRecord) -> dict[str, list[aml.ModelRecord]]:
    """Every container of the workspace: a name with versions, or one made by a container ``PUT``."""
    names: dict[str, list[aml.ModelRecord]] = {}
    for model in aml.models_in(state, ws):
        names.setdefault(model.name, []).append(model)
    with state.lock:
        for key, name in list(_container_records(state)):
            if key == ws.key:
                names.setdefault(name, [])
    return names


def list_containers(request: Request, state: EmulatorState) -> Response:
    """``ModelContainers_List``: one container per model name, by name."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    names = _container_names(state, ws)
    items = [_container_json(ws, name, names[name], state) for name in sorted(names)]
    return _page(request, items, PAGE_SIZE)


def get_container(request: Request, state: EmulatorState) -> Response:
    """``ModelContainers_Get``."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    name = request.params["name"]
    versions = _container_names(state, ws).get(name)
    if versions is None:
        return _not_found(f"Model container {name}")
    return Response(200, _container_json(ws, name, versions, state))


def _string_map(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                             for k, v in value.items()))


def put_container(request: Request, state: EmulatorState) -> Response:
    """``ModelContainers_CreateOrUpdate`` (mfe.json 2023-08-01-preview: body ``ModelContainerResource``, whose
    ``properties`` are required; answers 200 for an existing container and 201 for a new one, the two statuses
    the definition declares and azure-ai-ml's generated client accepts). The whole container is replaced by
    what is sent: description, tags, properties, isArchived (``AssetContainer``); ``latestVersion`` and
    ``nextVersion`` are read-only and come from the versions."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    name = request.params["name"]
    if not NAME.fullmatch(name):
        return error(400, "BadRequest", f"Model name {name!r} is not valid.")
    body = request.json()
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        return error(400, "BadRequest", "The request body must carry the container's properties.")
    if not (_string_map(props.get("tags")) and _string_map(props.get("properties"))
            and isinstance(props.get("description"), (str, type(None)))
            and isinstance(props.get("isArchived", False), bool)):
        return error(400, "BadRequest", "tags and properties must map strings to strings, description must be a "
                                        "string and isArchived a boolean.")
    existed = name in _container_names(state, ws)
    with state.lock:
        records = _container_records(state)
        previous = records.get((ws.key, name), {})
        records[(ws.key, name)] = {
            "description": props.get("description"), "tags": dict(props.get("tags") or {}),
            "properties": dict(props.get("properties") or {}), "isArchived": bool(props.get("isArchived", False)),
            "created": previous.get("created") or now_iso(), "modified": now_iso()}
    versions = _container_names(state, ws)[name]
    return Response(200 if existed else 201, _container_json(ws, name, versions, state))


_ORDER = {"createdtime desc": True, "createdtime asc": False, "createdtime": False}


def list_versions(request: Request, state: EmulatorState) -> Response:
    """``ModelVersions_List``: filters ``tags`` (``k=v,k2``: every pair must match), ``properties``,
    ``listViewType``; ``$orderBy`` ``createdtime desc|asc`` (default: newest first, as the service answers);
    ``$top`` is the page size."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    tags, props = aml._filter_pairs(request.q("tags")), aml._filter_pairs(request.q("properties"))
    order = (request.q("$orderBy") or "createdtime desc").lower()
    if order not in _ORDER:
        return error(400, "BadRequest", f"$orderBy '{request.q('$orderBy')}' is not supported.")
    chosen = [m for m in _versions_of(state, ws, request.params["name"])
              if _active(request, m) and aml._matches(m.kv_tags, tags) and aml._matches(m.properties, props)]
    chosen.sort(key=lambda m: (m.created, m.version), reverse=_ORDER[order])
    try:
        size = int(request.q("$top") or PAGE_SIZE)
    except ValueError:
        return error(400, "BadRequest", "$top must be an integer.")
    return _page(request, [_version_json(ws, m) for m in chosen], max(size, 1))


def _version_or_error(request: Request, state: EmulatorState) -> tuple[WorkspaceRecord, aml.ModelRecord] | Response:
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    name, version = request.params["name"], request.params["version"]
    model = next((m for m in _versions_of(state, ws, name) if str(m.version) == version), None)
    if model is None:
        return _not_found(f"Model version {name}:{version}")
    return ws, model


def get_version(request: Request, state: EmulatorState) -> Response:
    """``ModelVersions_Get``."""
    found = _version_or_error(request, state)
    return found if isinstance(found, Response) else Response(200, _version_json(*found))


def put_version(request: Request, state: EmulatorState) -> Response:
    """``ModelVersions_CreateOrUpdate``. A new version is created (201); an existing one keeps its files
    (``modelUri`` may not change: the SDK's ``ASSET_PATH_ERROR``), its tags and description are replaced, and
    properties are add-only, as in v1 (the v1 ``PATCH`` refuses a changed property the same way)."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    name, version = request.params["name"], request.params["version"]
    if not NAME.fullmatch(name):
        return error(400, "UserError", f"Model name '{name}' is invalid.")
    if not version.isdigit() or int(version) < 1:
        return error(400, "UserError", f"Model version '{version}' is invalid: the emulator keeps integer versions "
                                       "(what SDK v1 can read).")
    body = (request.json() or {}).get("properties") or {}
    tags, properties = body.get("tags") or {}, body.get("properties") or {}
    if not all(isinstance(m, dict) and all(isinstance(v, str) for v in m.values()) for m in (tags, properties)):
        return error(400, "UserError", "tags and properties must be maps of strings.")
    uri = body.get("modelUri")
    if not isinstance(uri, str) or not uri:
        return error(400, "UserError", "modelUri is required.")
    with state.lock:
        models = aml._models(state, ws)
        existing = models.get(f"{name}:{version}")
        if existing is not None:
            if existing.url != uri:
                return error(400, "UserError", "The path of an existing asset cannot be changed.")
            changed = [k for k, v in existing.properties.items() if k in properties and properties[k] != v]
            if changed:
                return error(400, "UserError", f"Properties are immutable; existing keys cannot change: {changed}.")
            existing.kv_tags = dict(tags)
            existing.properties = {**existing.properties, **properties}
            existing.description = body.get("description")
            existing.archived = bool(body.get("isArchived"))
            existing.modified = now_iso()
            return Response(200, _version_json(ws, existing))
        counters = aml._aml(state).setdefault("model_versions", {})
        if int(version) <= counters.get((ws.key, name), 0):
            # v1 never reuses a version number, even after a delete; neither does the v2 service.
            return error(409, "UserError", f"Version {version} of model {name} existed before.")
        counters[(ws.key, name)] = int(version)
        model = aml.ModelRecord(name, int(version), uri, body.get("description"), dict(tags), dict(properties),
                                run_id=body.get("jobName"))
        models[model.id] = model
    return Response(201, _version_json(ws, model))


# --------------------------------------------------------------------------------------------------------------
# The default datastore
# --------------------------------------------------------------------------------------------------------------


def _datastore_json(ws: WorkspaceRecord) -> dict[str, Any]:
    """``DatastoreResource`` of an ``AzureBlob`` datastore on the workspace's account (identity-less, with an
    account key the service hands out as a SAS through ``listSecrets``). Its credentials carry their ``secrets``
    reduced to the type, as azure-rest-api-specs' ``examples/Datastore/get.json`` (2024-10-01-preview) shows a
    read: ``AccountKeyDatastoreCredentials`` requires ``secrets`` (``mfe.json`` at that api-version, vendored in
    ``specs/``), and the values of a secret (``x-ms-secret``) are never read back."""
    return {
        "id": f"{ws.arm_id}/datastores/{DEFAULT_DATASTORE}",
        "name": DEFAULT_DATASTORE,
        "type": "Microsoft.MachineLearningServices/workspaces/datastores",
        "systemData": _system_data(ws.created, ws.created),
        "properties": {
            "datastoreType": "AzureBlob", "isDefault": True, "description": None, "tags": {}, "properties": {},
            "accountName": ws.storage_account, "containerName": aml.BLOB_CONTAINER, "endpoint": "core.windows.net",
            "protocol": "https", "serviceDataAccessAuthIdentity": "None",
            "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}},
        },
    }


def get_datastore(request: Request, state: EmulatorState) -> Response:
    """``Datastores_Get`` of the default datastore (the only one emulated)."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    if request.params["datastore"] != DEFAULT_DATASTORE:
        return _not_found(f"Datastore {request.params['datastore']}")
    return Response(200, _datastore_json(ws))


def list_datastore_secrets(request: Request, state: EmulatorState) -> Response:
    """``Datastores_ListSecrets``. azure-ai-ml asks for an expirable secret: a SAS token for the container
    (``SasDatastoreSecrets``), which ``aml.py``'s blob routes accept for any blob in it."""
    ws = _guarded(request, state)
    if isinstance(ws, Response):
        return ws
    if request.params["datastore"] != DEFAULT_DATASTORE:
        return _not_found(f"Datastore {request.params['datastore']}")
    return Response(200, {"secretsType": "Sas",
                          "sasToken": aml.container_sas_token(ws.storage_account, aml.BLOB_CONTAINER)})


_MODELS = _WS + r"/models"
ROUTES = [
    Route("GET", ARM_HOST, _MODELS, list_containers),
    Route("GET", ARM_HOST, _MODELS + r"/(?P<name>[^/]+)", get_container),
    Route("PUT", ARM_HOST, _MODELS + r"/(?P<name>[^/]+)", put_container),
    Route("GET", ARM_HOST, _MODELS + r"/(?P<name>[^/]+)/versions", list_versions),
    Route("GET", ARM_HOST, _MODELS + r"/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", get_version),
    Route("PUT", ARM_HOST, _MODELS + r"/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", put_version),
    Route("GET", ARM_HOST, _WS + r"/datastores/(?P<datastore>[^/]+)", get_datastore),
    Route("POST", ARM_HOST, _WS + r"/datastores/(?P<datastore>[^/]+)/listSecrets", list_datastore_secrets),
]
