"""Azure Container Registry: the management plane (ARM) and enough of the data plane to read images.

Management plane, host ``management.azure.com``, provider ``Microsoft.ContainerRegistry`` (what
azure-mgmt-containerregistry 14 sends, api-version 2025-04-01 by default; any api-version is accepted):
registries GET / PATCH / list, ``listCredentials``, ``regenerateCredential``, ``generateCredentials``, scope maps
and tokens (PUT / GET / DELETE / list). Writes answer like the service's long-running operations:

* ``lro = "async"`` (default): PUT/PATCH -> 201 + ``Azure-AsyncOperation``, POST generateCredentials and
  DELETE -> 202 + ``Location``. The operation is already finished, so the SDK pollers' *first* status GET
  (sent without delay) reads ``Succeeded`` and ``.result()`` returns at once, whatever ``polling_interval``.
* ``lro = "sync"``: 200 with the final body (``set_lro_mode(state, "sync")``).

Data plane, host ``<name>.azurecr.io``: the ACR REST API that ``azure.containerregistry.ContainerRegistryClient``
uses (``/acr/v1/_catalog``, ``/acr/v1/{repo}``, ``/acr/v1/{repo}/_tags[/{tag}]``) and the Docker Registry v2
reads (``/v2/``, ``/v2/_catalog``, ``/v2/{repo}/tags/list``, ``/v2/{repo}/manifests/{ref}``). Authentication is
the real challenge flow: an anonymous request gets 401 + ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``;
the client exchanges an AAD token at ``POST /oauth2/exchange`` for an ACR refresh token, trades it at
``POST /oauth2/token`` for an access token naming the granted scope, and retries. Basic auth (admin user, or a
repository-scoped token and one of its generated passwords) is accepted on the API directly and at
``GET /oauth2/token``; what a scope-map token may do is limited to its scope map's actions.

``POST .../registries/{name}/importImage`` (``Registries_ImportImage``) copies an image from another emulated
registry (``source.resourceId`` or ``source.registryUri``) by tag or digest: the manifest and the blobs it names
are copied, so the digest is the same in both registries (see ``import_image``).

State (``state.service("acr")``): ``registries`` (lower-case name -> ``RegistryRecord``), ``repositories``
(lower-case registry name -> repository -> tag -> ``TagRecord``; the AML package builder pushes here through
``push_image``), ``manifests`` and ``blobs`` (lower-case registry name -> digest -> bytes: what a pushed image
is made of), ``operations`` (async operation id -> status / result) and ``lro``.
"""

from __future__ import annotations

import base64
import hashlib
import json as _json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote

from .arm import decode_jwt, now_iso, require_api_version, require_bearer, unsigned_jwt
from .framework import EmulatorState, Request, Response, Route, error

ARM_HOST = r"management\.azure\.com"
# A registry's data plane is at its login server: ``<name>.azurecr.io`` in public Azure, but ``.azurecr.cn`` /
# ``.azurecr.us`` in sovereign clouds, and ``<name>-<hash>.azurecr.io`` with a domain name label. Clients must
# take it from ``properties.loginServer`` ("The URL that can be used to log into the container registry",
# readOnly: azure-rest-api-specs, specification/containerregistry/resource-manager/Microsoft.ContainerRegistry/
# Registry/stable/2025-04-01/containerregistry.json, RegistryProperties).
DATA_HOST = r"[a-z0-9][a-z0-9-]{4,79}\.azurecr\.(io|cn|us)"
DEFAULT_API_VERSION = "2025-04-01"
ACR_TOKEN_LIFETIME_S = 3 * 3600

_PROVIDER = r"(?i)/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerRegistry"
_REG = _PROVIDER + r"/registries/(?P<registry>[^/]+)"

#: scope-map action -> the data-plane token actions it grants
_SCOPE_MAP_ACTIONS = {
    "content/read": {"pull"},
    "content/write": {"push"},
    "content/delete": {"delete"},
    "metadata/read": {"metadata_read"},
    "metadata/write": {"metadata_write"},
}
_ALL_REPO_ACTIONS = {"pull", "push", "delete", "metadata_read", "metadata_write"}
_ACTION_PATTERN = re.compile(
    r"repositories/(?P<repo>[a-z0-9*][a-z0-9._/*-]*)/(?P<verb>content|metadata)/(?P<op>read|write|delete)"
)


# --------------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ScopeMapRecord:
    name: str
    actions: list[str]
    description: str = ""
    kind: str = "UserDefined"  # SystemDefined for the built-in _repositories_* maps
    created: str = field(default_factory=now_iso)


@dataclass
class TokenPasswordRecord:
    name: str  # "password1" | "password2"
    value: str
    created: str = field(default_factory=now_iso)
    expiry: str | None = None

    def expired(self) -> bool:
        return self.expiry is not None and datetime.fromisoformat(self.expiry.replace("Z", "+00:00")) < datetime.now(
            timezone.utc
        )


@dataclass
class TokenRecord:
    name: str
    scope_map: str
    status: str = "enabled"
    created: str = field(default_factory=now_iso)
    passwords: dict[str, TokenPasswordRecord] = field(default_factory=dict)


@dataclass
class RegistryRecord:
    subscription_id: str
    resource_group: str
    name: str
    location: str = "westeurope"
    sku: str = "Standard"
    admin_user_enabled: bool = False
    anonymous_pull_enabled: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=lambda: {"password": _secret(), "password2": _secret()})
    created: str = field(default_factory=now_iso)
    scope_maps: dict[str, ScopeMapRecord] = field(default_factory=dict)
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    host: str | None = None  # a login server other than <name>.azurecr.io (see DATA_HOST)

    @property
    def login_server(self) -> str:
        return self.host or f"{self.name.lower()}.azurecr.io"

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.name}"
        )

    def to_json(self, provisioning_state: str = "Succeeded") -> dict[str, Any]:
        return {
            "id": self.arm_id,
            "name": self.name,
            "type": "Microsoft.ContainerRegistry/registries",
            "location": self.location,
            "tags": dict(self.tags),
            "sku": {"name": self.sku, "tier": self.sku},
            "systemData": {"createdAt": self.created, "createdByType": "User"},
            "properties": {
                "loginServer": self.login_server,
                "creationDate": self.created,
                "provisioningState": provisioning_state,
                "adminUserEnabled": self.admin_user_enabled,
                "anonymousPullEnabled": self.anonymous_pull_enabled,
                "publicNetworkAccess": "Enabled",
                "networkRuleBypassOptions": "AzureServices",
                "zoneRedundancy": "Disabled",
                "dataEndpointEnabled": False,
                "dataEndpointHostNames": [],
                "privateEndpointConnections": [],
                "encryption": {"status": "disabled"},
                "policies": {
                    "quarantinePolicy": {"status": "disabled"},
                    "trustPolicy": {"type": "Notary", "status": "disabled"},
                    "retentionPolicy": {"days": 7, "status": "disabled"},
                    "exportPolicy": {"status": "enabled"},
                },
            },
        }

    def scope_map_json(self, sm: ScopeMapRecord, provisioning_state: str = "Succeeded") -> dict[str, Any]:
        return {
            "id": f"{self.arm_id}/scopeMaps/{sm.name}",
            "name": sm.name,
            "type": "Microsoft.ContainerRegistry/registries/scopeMaps",
            "properties": {
                "description": sm.description,
                "type": sm.kind,
                "creationDate": sm.created,
                "provisioningState": provisioning_state,
                "actions": list(sm.actions),
            },
        }

    def token_json(self, tok: TokenRecord, provisioning_state: str = "Succeeded") -> dict[str, Any]:
        """Token passwords are listed without values: they are shown only by generateCredentials."""
        return {
            "id": f"{self.arm_id}/tokens/{tok.name}",
            "name": tok.name,
            "type": "Microsoft.ContainerRegistry/registries/tokens",
            "properties": {
                "creationDate": tok.created,
                "provisioningState": provisioning_state,
                "scopeMapId": f"{self.arm_id}/scopeMaps/{tok.scope_map}",
                "status": tok.status,
                "credentials": {
                    "certificates": [],
                    "passwords": [
                        {"name": p.name, "creationTime": p.created, **({"expiry": p.expiry} if p.expiry else {})}
                        for p in tok.passwords.values()
                    ],
                },
            },
        }


@dataclass
class TagRecord:
    name: str
    digest: str
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "createdTime": self.created,
            "lastUpdateTime": self.updated,
            "signed": False,
            "changeableAttributes": {"deleteEnabled": True, "writeEnabled": True, "readEnabled": True,
                                     "listEnabled": True},
        }


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode()


_SYSTEM_SCOPE_MAPS = {
    "_repositories_pull": ["repositories/*/content/read"],
    "_repositories_pull_metadata_read": ["repositories/*/content/read", "repositories/*/metadata/read"],
    "_repositories_push": ["repositories/*/content/read", "repositories/*/content/write"],
    "_repositories_push_metadata_write": ["repositories/*/content/read", "repositories/*/content/write",
                                          "repositories/*/metadata/read", "repositories/*/metadata/write"],
    "_repositories_admin": ["repositories/*/content/read", "repositories/*/content/write",
                            "repositories/*/content/delete", "repositories/*/metadata/read",
                            "repositories/*/metadata/write"],
}


# --------------------------------------------------------------------------------------------------------------
# Public helpers (seeding, shared with the AML module and tests)
# --------------------------------------------------------------------------------------------------------------


def add_registry(
    state: EmulatorState,
    subscription_id: str,
    resource_group: str,
    name: str,
    *,
    location: str = "westeurope",
    sku: str = "Standard",
    admin_user_enabled: bool = False,
    login_server: str | None = None,
) -> RegistryRecord:
    """Create a registry (with ACR's built-in system scope maps). Registry names are global, like login servers;
    ``login_server`` serves it at another host than ``<name>.azurecr.io`` (a sovereign cloud, a domain name label)."""
    record = RegistryRecord(subscription_id, resource_group, name, location, sku, admin_user_enabled,
                            host=login_server.lower() if login_server else None)
    for sm_name, actions in _SYSTEM_SCOPE_MAPS.items():
        record.scope_maps[sm_name] = ScopeMapRecord(sm_name, actions, "Built-in scope map", "SystemDefined")
    with state.lock:
        state.service("acr").setdefault("registries", {})[name.lower()] = record
        state.service("acr").setdefault("repositories", {}).setdefault(name.lower(), {})
    return record


def find_registry(state: EmulatorState, name: str) -> RegistryRecord | None:
    with state.lock:
        registries: dict[str, RegistryRecord] = state.service("acr").get("registries", {})
        return registries.get(name.lower())


def set_lro_mode(state: EmulatorState, mode: str) -> None:
    """``"async"`` (201/202 + a finished operation to poll) or ``"sync"`` (final answer at once)."""
    if mode not in ("async", "sync"):
        raise ValueError(mode)
    with state.lock:
        state.service("acr")["lro"] = mode


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _store(state: EmulatorState, kind: str, registry_name: str) -> dict[str, bytes]:
    """``manifests`` or ``blobs`` of one registry: digest -> content (call with ``state.lock`` held)."""
    stored: dict[str, bytes] = state.service("acr").setdefault(kind, {}).setdefault(registry_name.lower(), {})
    return stored


def _new_image(state: EmulatorState, registry_name: str, repository: str, tag: str) -> str:
    """Store a small image (a config blob, one layer blob and the manifest naming them) whose content is
    unique to this push; return the manifest's digest (the sha256 of its bytes, as a registry computes it)."""
    seed = f"{registry_name}/{repository}:{tag}@{time.time_ns()}".encode()
    config = b'{"architecture":"amd64","os":"linux","build":"' + hashlib.sha256(seed).hexdigest().encode() + b'"}'
    layer = hashlib.sha512(seed).digest() * 16
    manifest = ('{"schemaVersion":2,"mediaType":"' + MEDIA_MANIFEST + '",'
                '"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
                f'"size":{len(config)},"digest":"{_sha256(config)}"}},'
                '"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip",'
                f'"size":{len(layer)},"digest":"{_sha256(layer)}"}}]}}').encode()
    blobs = _store(state, "blobs", registry_name)
    blobs[_sha256(config)], blobs[_sha256(layer)] = config, layer
    _store(state, "manifests", registry_name)[_sha256(manifest)] = manifest
    return _sha256(manifest)


def image_content(state: EmulatorState, registry_name: str, digest: str) -> tuple[bytes, dict[str, bytes]] | None:
    """The manifest ``digest`` of a registry and the blobs it names (digest -> bytes), or None."""
    with state.lock:
        manifest = _store(state, "manifests", registry_name).get(digest)
        if manifest is None:
            return None
        blobs = _store(state, "blobs", registry_name)
        parsed = _json.loads(manifest)
        names = [parsed["config"]["digest"], *(layer["digest"] for layer in parsed["layers"])]
        return manifest, {name: blobs[name] for name in names if name in blobs}


def push_image(state: EmulatorState, registry_name: str, repository: str, tag: str) -> TagRecord:
    """Record ``<registry>.azurecr.io/<repository>:<tag>`` (a new image: a new digest; an existing tag is moved)."""
    with state.lock:
        repos = state.service("acr").setdefault("repositories", {}).setdefault(registry_name.lower(), {})
        tags: dict[str, TagRecord] = repos.setdefault(repository, {})
        digest = _new_image(state, registry_name, repository, tag)
        previous = tags.get(tag)
        record = TagRecord(tag, digest, created=previous.created if previous else now_iso())
        tags[tag] = record
        return record


def list_tags(state: EmulatorState, registry_name: str, repository: str) -> dict[str, TagRecord]:
    with state.lock:
        return dict(state.service("acr").get("repositories", {}).get(registry_name.lower(), {}).get(repository, {}))


def _repositories(state: EmulatorState, registry_name: str) -> dict[str, dict[str, TagRecord]]:
    repos: dict[str, dict[str, TagRecord]] = state.service("acr").setdefault("repositories", {}).setdefault(
        registry_name.lower(), {}
    )
    return repos


# --------------------------------------------------------------------------------------------------------------
# Management plane
# --------------------------------------------------------------------------------------------------------------


def _not_found(kind: str, name: str, rg: str) -> Response:
    return error(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.ContainerRegistry/{kind}/{name}' under resource group '{rg}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def _registry_or_error(request: Request, state: EmulatorState) -> RegistryRecord | Response:
    """Guards shared by every management route: api-version, bearer token, and the registry itself."""
    if (failure := require_api_version(request) or require_bearer(request)) is not None:
        return failure
    p = request.params
    record = find_registry(state, p["registry"])
    if (
        record is None
        or record.subscription_id.lower() != p["sub"].lower()
        or record.resource_group.lower() != p["rg"].lower()
    ):
        return _not_found("registries", p["registry"], p["rg"])
    return record


def _lro_mode(state: EmulatorState) -> str:
    with state.lock:
        mode: str = state.service("acr").get("lro", "async")
        return mode


def _new_operation(state: EmulatorState, result: Any = None) -> str:
    op_id = str(uuid.uuid4())
    with state.lock:
        state.service("acr").setdefault("operations", {})[op_id] = {
            "status": "Succeeded", "result": result, "startTime": now_iso(), "endTime": now_iso(),
        }
    return op_id


def _operation_url(request: Request, record: RegistryRecord, kind: str, op_id: str) -> str:
    api_version = request.q("api-version", DEFAULT_API_VERSION)
    return f"https://management.azure.com{record.arm_id}/{kind}/{op_id}?api-version={api_version}"


def _put_response(request: Request, state: EmulatorState, record: RegistryRecord, final: dict[str, Any],
                  in_progress: dict[str, Any], created: bool) -> Response:
    """The answer to a PUT/PATCH whose effect is already applied (see the module docstring)."""
    if _lro_mode(state) == "sync":
        # 200 even on creation: in the 2025-04-01 definition the 201 of ScopeMaps_Create, Tokens_Create and
        # Registries_Update is "the operation will complete asynchronously" and carries Azure-AsyncOperation.
        return Response(200, final)
    op_url = _operation_url(request, record, "operationStatuses", _new_operation(state))
    return Response(201 if created else 200, in_progress, {"Azure-AsyncOperation": op_url})


def _post_or_delete_response(request: Request, state: EmulatorState, record: RegistryRecord,
                             result: Any, sync_status: int) -> Response:
    if _lro_mode(state) == "sync":
        return Response(sync_status, result)
    op_url = _operation_url(request, record, "operationResults", _new_operation(state, result))
    return Response(202, None, {"Location": op_url, "Retry-After": "0"})


def get_registry(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    return record if isinstance(record, Response) else Response(200, record.to_json())


def list_registries(request: Request, state: EmulatorState) -> Response:
    if (failure := require_api_version(request) or require_bearer(request)) is not None:
        return failure
    sub, rg = request.params["sub"].lower(), (request.params.get("rg") or "").lower()
    with state.lock:
        records = list(state.service("acr").get("registries", {}).values())
    chosen = [r for r in records if r.subscription_id.lower() == sub and (not rg or r.resource_group.lower() == rg)]
    return Response(200, {"value": [r.to_json() for r in chosen]})


def update_registry(request: Request, state: EmulatorState) -> Response:
    """PATCH with ``RegistryUpdateParameters``: admin user, anonymous pull, tags and sku are modelled."""
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    body = request.json() or {}
    props = body.get("properties") or {}
    with state.lock:
        if "adminUserEnabled" in props:
            record.admin_user_enabled = bool(props["adminUserEnabled"])
        if "anonymousPullEnabled" in props:
            record.anonymous_pull_enabled = bool(props["anonymousPullEnabled"])
        if body.get("tags") is not None:
            record.tags = dict(body["tags"])
        if (body.get("sku") or {}).get("name"):
            record.sku = body["sku"]["name"]
    return _put_response(request, state, record, record.to_json(), record.to_json("Updating"), created=False)


def _admin_disabled(record: RegistryRecord) -> Response:
    # The live service's exact code/message here are not known; the status and the gist are.
    return error(400, "AdminUserDisabled",
                 f"Admin user is disabled for registry '{record.name}'. Enable the admin user to use its credentials.")


def _admin_credentials(record: RegistryRecord) -> dict[str, Any]:
    return {"username": record.name, "passwords": [{"name": n, "value": v} for n, v in record.passwords.items()]}


def list_credentials(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    if not record.admin_user_enabled:
        return _admin_disabled(record)
    return Response(200, _admin_credentials(record))


def regenerate_credential(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    if not record.admin_user_enabled:
        return _admin_disabled(record)
    name = (request.json() or {}).get("name")
    if name not in ("password", "password2"):
        return error(400, "InvalidParameter", f"The password name '{name}' is invalid: use 'password' or 'password2'.")
    with state.lock:
        record.passwords[name] = _secret()
    return Response(200, _admin_credentials(record))


# -- scope maps -------------------------------------------------------------------------------------------------


def _validate_actions(actions: Any) -> str | None:
    if not isinstance(actions, list) or not actions:
        return "A scope map needs a non-empty list of actions."
    for action in actions:
        if not isinstance(action, str) or not _ACTION_PATTERN.fullmatch(action):
            return (f"The action '{action}' is invalid. Expected "
                    "'repositories/<repository>/<content|metadata>/<read|write|delete>'.")
        if action.endswith("metadata/delete"):
            return f"The action '{action}' is invalid: metadata supports read and write only."
    return None


# Token and scope map names: azure-rest-api-specs containerregistry.json, the ScopeMapNameParameter and
# TokenNameParameter: minLength 5, maxLength 50, pattern ^[a-zA-Z0-9-]*$.
CHILD_NAME = re.compile(r"[a-zA-Z0-9-]{5,50}")


def _invalid_name(kind: str, name: str) -> Response | None:
    if CHILD_NAME.fullmatch(name):
        return None
    return error(400, "InvalidParameter", f"The {kind} name '{name}' is invalid: 5 to 50 letters, digits and '-'.")


def put_scope_map(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    name = request.params["name"]
    if (invalid := _invalid_name("scope map", name)) is not None:
        return invalid
    props = (request.json() or {}).get("properties") or {}
    if (problem := _validate_actions(props.get("actions"))) is not None:
        return error(400, "InvalidScopeMapActions", problem)
    with state.lock:
        existing = record.scope_maps.get(name)
        if existing is not None and existing.kind == "SystemDefined":
            return error(400, "CannotModifySystemScopeMap", f"The system scope map '{name}' cannot be modified.")
        sm = ScopeMapRecord(name, list(props["actions"]), props.get("description") or "",
                            created=existing.created if existing else now_iso())
        record.scope_maps[name] = sm
    return _put_response(request, state, record, record.scope_map_json(sm), record.scope_map_json(sm, "Creating"),
                         created=existing is None)


def get_scope_map(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    sm = record.scope_maps.get(request.params["name"])
    if sm is None:
        return _not_found(f"registries/{record.name}/scopeMaps", request.params["name"], request.params["rg"])
    return Response(200, record.scope_map_json(sm))


def list_scope_maps(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    return Response(200, {"value": [record.scope_map_json(sm) for sm in record.scope_maps.values()]})


def delete_scope_map(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    name = request.params["name"]
    with state.lock:
        sm = record.scope_maps.get(name)
        if sm is None:
            return Response(204)
        if sm.kind == "SystemDefined":
            return error(400, "CannotDeleteSystemScopeMap", f"The system scope map '{name}' cannot be deleted.")
        users = [t.name for t in record.tokens.values() if t.scope_map == name]
        if users:
            return error(409, "ScopeMapInUse", f"The scope map '{name}' is used by tokens: {', '.join(users)}.")
        del record.scope_maps[name]
    return _post_or_delete_response(request, state, record, None, 200)


# -- tokens -----------------------------------------------------------------------------------------------------


def _scope_map_name(record: RegistryRecord, scope_map_id: Any) -> str | None:
    """The scope map an ARM id names, if it belongs to this registry."""
    if not isinstance(scope_map_id, str):
        return None
    prefix, _, name = scope_map_id.rpartition("/scopeMaps/")
    if prefix.lower() != record.arm_id.lower() or name not in record.scope_maps:
        return None
    return name


def put_token(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    name = request.params["name"]
    if (invalid := _invalid_name("token", name)) is not None:
        return invalid
    props = (request.json() or {}).get("properties") or {}
    status = props.get("status") or "enabled"
    if status not in ("enabled", "disabled"):
        return error(400, "InvalidParameter", f"The token status '{status}' is invalid: use 'enabled' or 'disabled'.")
    with state.lock:
        existing = record.tokens.get(name)
        scope_map = _scope_map_name(record, props.get("scopeMapId")) if "scopeMapId" in props else None
        if scope_map is None and (existing is None or "scopeMapId" in props):
            return error(400, "InvalidScopeMapId",
                         f"The scope map id '{props.get('scopeMapId')}' does not name a scope map of this registry.")
        tok = existing or TokenRecord(name, scope_map or "")
        tok.scope_map = scope_map or tok.scope_map
        tok.status = status
        record.tokens[name] = tok
    return _put_response(request, state, record, record.token_json(tok), record.token_json(tok, "Creating"),
                         created=existing is None)


def get_token(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    tok = record.tokens.get(request.params["name"])
    if tok is None:
        return _not_found(f"registries/{record.name}/tokens", request.params["name"], request.params["rg"])
    return Response(200, record.token_json(tok))


def list_tokens(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    return Response(200, {"value": [record.token_json(t) for t in record.tokens.values()]})


def delete_token(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    with state.lock:
        if record.tokens.pop(request.params["name"], None) is None:
            return Response(204)
    return _post_or_delete_response(request, state, record, None, 200)


def generate_credentials(request: Request, state: EmulatorState) -> Response:
    """``POST generateCredentials`` ``{tokenId, expiry?, name?}``: new password(s); without ``name`` both."""
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    body = request.json() or {}
    token_id = body.get("tokenId") or ""
    prefix, _, token_name = token_id.rpartition("/tokens/")
    tok = record.tokens.get(token_name) if prefix.lower() == record.arm_id.lower() else None
    if tok is None:
        return error(400, "InvalidTokenId", f"The token id '{token_id}' does not name a token of this registry.")
    names = [body["name"]] if body.get("name") else ["password1", "password2"]
    if any(n not in ("password1", "password2") for n in names):
        return error(400, "InvalidParameter", "The password name must be 'password1' or 'password2'.")
    with state.lock:
        fresh = [TokenPasswordRecord(n, _secret(), expiry=body.get("expiry")) for n in names]
        for password in fresh:
            tok.passwords[password.name] = password
    result = {
        "username": tok.name,
        "passwords": [
            {"name": p.name, "value": p.value, "creationTime": p.created, **({"expiry": p.expiry} if p.expiry else {})}
            for p in fresh
        ],
    }
    return _post_or_delete_response(request, state, record, result, 200)


# -- long-running operations ------------------------------------------------------------------------------------


def _operation(request: Request, state: EmulatorState) -> tuple[RegistryRecord, dict[str, Any]] | Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    with state.lock:
        op = state.service("acr").get("operations", {}).get(request.params["op"])
    if op is None:
        return error(404, "OperationNotFound", f"The operation '{request.params['op']}' was not found.")
    return record, op


def get_operation_status(request: Request, state: EmulatorState) -> Response:
    found = _operation(request, state)
    if isinstance(found, Response):
        return found
    _, op = found
    return Response(200, {"id": request.path, "name": request.params["op"], "status": op["status"],
                          "startTime": op["startTime"], "endTime": op["endTime"]})


def get_operation_result(request: Request, state: EmulatorState) -> Response:
    found = _operation(request, state)
    if isinstance(found, Response):
        return found
    _, op = found
    return Response(200, op["result"]) if op["result"] is not None else Response(204)


# -- importImage -------------------------------------------------------------------------------------------------

# ImportImageParameters and ImportSource as the 2025-04-01 definition (azure-rest-api-specs, specification/
# containerregistry/resource-manager/Microsoft.ContainerRegistry/Registry/stable/2025-04-01/containerregistry.json,
# Registries_ImportImage) and azure-mgmt-containerregistry 14's models describe them: ``source`` {``resourceId`` |
# ``registryUri``, ``credentials``, ``sourceImage``: "repository[:tag]" or "repository@digest"}, ``targetTags``,
# ``untaggedTargetRepositories``, ``mode``: "NoForce" (default: "any existing target tags will fail the operation
# before any copying begins") or "Force". The operation answers 200, or 202 + ``Location`` (long-running,
# ``final-state-via: location``). ACR reports a failed import as ARM error code ``InvalidParameters`` with a
# message naming what failed (Azure/acr#632: "Error copying blobs"); the exact texts are not published, the
# ones below say what is wrong in the same shape.


def _import_failed(message: str) -> Response:
    return error(400, "InvalidParameters", message)


def _source_registry(state: EmulatorState, source: dict[str, Any]) -> RegistryRecord | None:
    resource_id = source.get("resourceId")
    if isinstance(resource_id, str):
        match = re.fullmatch(_REG, resource_id)
        record = find_registry(state, match.group("registry")) if match else None
        if record is None or match is None or record.arm_id.lower() != resource_id.lower():
            return None
        return record
    uri = str(source.get("registryUri") or "").lower()
    with state.lock:
        registries: dict[str, RegistryRecord] = state.service("acr").get("registries", {})
        return next((r for r in registries.values() if r.login_server == uri), None)


def import_image(request: Request, state: EmulatorState) -> Response:
    record = _registry_or_error(request, state)
    if isinstance(record, Response):
        return record
    body = request.json() or {}
    source = body.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("sourceImage"), str):
        return error(400, "InvalidRequestContent", "The request content was invalid: 'source.sourceImage' is required.")
    mode = str(body.get("mode") or "NoForce")
    targets = [str(t) for t in body.get("targetTags") or []]
    untagged = [str(r) for r in body.get("untaggedTargetRepositories") or []]
    if not targets and not untagged:
        return _import_failed("Specify at least one target tag or untagged target repository.")
    origin = _source_registry(state, source)
    image = source["sourceImage"]
    if origin is None:
        where = source.get("resourceId") or source.get("registryUri")
        return _import_failed(f"The source registry '{where}' was not found.")
    repository, _, digest = image.partition("@")
    tag = None if digest else (repository.split(":", 1)[1] if ":" in repository else "latest")
    repository = repository.split(":", 1)[0]
    tags = _tags_of(state, origin, repository) or {}
    if tag is not None:
        digest = tags[tag].digest if tag in tags else ""
    content = image_content(state, origin.name, digest) if digest else None
    if content is None:
        return _import_failed(f"Source image {origin.login_server}/{image} not found.")
    with state.lock:
        repos = _repositories(state, record.name)
        for target in targets:
            target_repository, _, target_tag = target.partition(":")
            existing = repos.get(target_repository, {}).get(target_tag or "latest")
            if existing is not None and mode != "Force":
                return _import_failed(f"Target tag {target} already exists; use mode Force to overwrite it.")
        manifest, blobs = content
        _store(state, "manifests", record.name)[digest] = manifest
        _store(state, "blobs", record.name).update(blobs)
        for target in targets:
            target_repository, _, target_tag = target.partition(":")
            repo_tags: dict[str, TagRecord] = repos.setdefault(target_repository, {})
            previous = repo_tags.get(target_tag or "latest")
            repo_tags[target_tag or "latest"] = TagRecord(target_tag or "latest", digest,
                                                          created=previous.created if previous else now_iso())
    return _post_or_delete_response(request, state, record, None, 200)


# --------------------------------------------------------------------------------------------------------------
# Data plane: authentication
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One ``type:name:actions`` entry of a Docker/ACR token scope."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse_all(cls, scope: str) -> list[Grant]:
        grants = []
        for item in scope.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                grants.append(cls(kind, name, frozenset(a for a in actions.split(",") if a)))
        return grants

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


@dataclass(frozen=True)
class Principal:
    """Who is calling the data plane; ``allowed`` says which actions it may get on a scope entry."""

    name: str
    repo_actions: dict[str, frozenset[str]] | None  # None: everything (admin user, AAD identities)

    def allowed(self, grant: Grant) -> frozenset[str]:
        if self.repo_actions is None:
            return grant.actions
        if grant.type != "repository":
            return frozenset()
        permitted: set[str] = set()
        for pattern, actions in self.repo_actions.items():
            if re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), grant.name):
                permitted |= actions
        return grant.actions & frozenset(permitted)


def _token_principal(record: RegistryRecord, tok: TokenRecord) -> Principal:
    sm = record.scope_maps.get(tok.scope_map)
    repo_actions: dict[str, set[str]] = {}
    for action in sm.actions if sm else []:
        m = _ACTION_PATTERN.fullmatch(action)
        if m:
            repo_actions.setdefault(m["repo"], set()).update(_SCOPE_MAP_ACTIONS[f"{m['verb']}/{m['op']}"])
    return Principal(tok.name, {k: frozenset(v) for k, v in repo_actions.items()})


def _basic_principal(record: RegistryRecord, header: str) -> Principal | None:
    """Admin user or a repository-scoped token, from ``Authorization: Basic``."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except ValueError:
        return None
    if record.admin_user_enabled and username.lower() == record.name.lower() and password in record.passwords.values():
        return Principal(record.name, None)
    tok = record.tokens.get(username)
    if tok is None or tok.status != "enabled":
        return None
    if any(p.value == password and not p.expired() for p in tok.passwords.values()):
        return _token_principal(record, tok)
    return None


def _acr_jwt(record: RegistryRecord, kind: str, subject: str, **extra: Any) -> str:
    now = int(time.time())
    return unsigned_jwt({"iss": "Azure Container Registry", "aud": record.login_server, "sub": subject,
                         "grant_type": kind, "iat": now, "nbf": now, "exp": now + ACR_TOKEN_LIFETIME_S,
                         "jti": str(uuid.uuid4()), **extra})


def _acr_token_claims(record: RegistryRecord, token: str, kind: str) -> dict[str, Any] | None:
    claims = decode_jwt(token)
    if (
        claims is None
        or claims.get("aud") != record.login_server
        or claims.get("grant_type") != kind
        or float(claims.get("exp", 0)) < time.time()
    ):
        return None
    return claims


def _registry_from_host(request: Request, state: EmulatorState) -> RegistryRecord | Response:
    with state.lock:
        registries: dict[str, RegistryRecord] = state.service("acr").get("registries", {})
        record = next((r for r in registries.values() if r.login_server == request.host), None)
    if record is None:
        return _acr_error(404, "NAME_UNKNOWN", f"no registry has the login server '{request.host}'")
    return record


def _acr_error(status: int, code: str, message: str, detail: Any = None, **headers: str) -> Response:
    return Response(status, {"errors": [{"code": code, "message": message, "detail": detail}]}, headers)


def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}


def oauth2_exchange(request: Request, state: EmulatorState) -> Response:
    """``POST /oauth2/exchange``: an AAD access token -> an ACR refresh token (AAD identities get full access)."""
    record = _registry_from_host(request, state)
    if isinstance(record, Response):
        return record
    form = _form(request)
    if form.get("grant_type") not in ("access_token", "access_token_refresh_token"):
        return _acr_error(400, "UNSUPPORTED", f"grant_type '{form.get('grant_type')}' is not supported")
    if form.get("service") != record.login_server:
        return _acr_error(400, "DENIED", f"service must be '{record.login_server}'")
    claims = decode_jwt(form.get("access_token", ""))
    if claims is None or float(claims.get("exp", 0)) < time.time():
        return _acr_error(401, "UNAUTHORIZED", "the AAD access token is invalid or expired")
    subject = str(claims.get("oid") or claims.get("appid") or "aad-user")
    return Response(200, {"refresh_token": _acr_jwt(record, "refresh_token", subject, tenant=claims.get("tid"))})


def _issue_access_token(record: RegistryRecord, principal: Principal, scope: str) -> Response:
    grants = [Grant(g.type, g.name, principal.allowed(g)) for g in Grant.parse_all(scope)]
    access = [g.to_json() for g in grants if g.actions]
    return Response(200, {"access_token": _acr_jwt(record, "access_token", principal.name, access=access)})


def oauth2_token_post(request: Request, state: EmulatorState) -> Response:
    """``POST /oauth2/token``: an ACR refresh token (or anonymous ``password`` grant) -> an access token."""
    record = _registry_from_host(request, state)
    if isinstance(record, Response):
        return record
    form = _form(request)
    grant_type = form.get("grant_type", "refresh_token")
    if grant_type == "password" and not form.get("refresh_token"):
        if not record.anonymous_pull_enabled:
            return _acr_error(401, "UNAUTHORIZED", "anonymous pull is disabled on this registry")
        anonymous = Principal("anonymous", {"*": frozenset({"pull", "metadata_read"})})
        return _issue_access_token(record, anonymous, form.get("scope", ""))
    if grant_type != "refresh_token":
        return _acr_error(400, "UNSUPPORTED", f"grant_type '{grant_type}' is not supported")
    claims = _acr_token_claims(record, form.get("refresh_token", ""), "refresh_token")
    if claims is None:
        return _acr_error(401, "UNAUTHORIZED", "the refresh token is invalid or expired")
    return _issue_access_token(record, Principal(str(claims["sub"]), None), form.get("scope", ""))


def oauth2_token_get(request: Request, state: EmulatorState) -> Response:
    """``GET /oauth2/token?service=&scope=`` with Basic auth (the Docker client's flow)."""
    record = _registry_from_host(request, state)
    if isinstance(record, Response):
        return record
    principal = _basic_principal(record, request.headers.get("authorization", ""))
    if principal is None:
        return _acr_error(401, "UNAUTHORIZED", "authentication required",
                          **{"WWW-Authenticate": f'Basic realm="https://{record.login_server}/oauth2/token"'})
    return _issue_access_token(record, principal, " ".join(request.query.get("scope", [])))


def _authorize(request: Request, record: RegistryRecord, needed: Grant) -> Response | None:
    """``None`` when the caller holds *needed*; else 401 with the challenge naming the scope to ask for."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    granted: frozenset[str] = frozenset()
    if scheme.lower() == "basic":
        principal = _basic_principal(record, header)
        granted = principal.allowed(needed) if principal else frozenset()
    elif scheme.lower() == "bearer":
        claims = _acr_token_claims(record, credential.strip(), "access_token")
        for entry in (claims or {}).get("access", []):
            if entry.get("type") == needed.type and entry.get("name") == needed.name:
                granted |= frozenset(entry.get("actions", []))
    if needed.actions <= granted:
        return None
    scope = f"{needed.type}:{needed.name}:{','.join(sorted(needed.actions))}"
    challenge = f'Bearer realm="https://{record.login_server}/oauth2/token",service="{record.login_server}",scope="{scope}"'
    detail = [{"Type": needed.type, "Name": needed.name, "Action": a} for a in sorted(needed.actions)]
    return _acr_error(401, "UNAUTHORIZED", "authentication required, visit https://aka.ms/acr/authorization for more "
                      "information.", detail, **{"WWW-Authenticate": challenge})


def _guard(request: Request, state: EmulatorState, needed: Grant) -> RegistryRecord | Response:
    record = _registry_from_host(request, state)
    if isinstance(record, Response):
        return record
    failure = _authorize(request, record, needed)
    return failure if failure is not None else record


# --------------------------------------------------------------------------------------------------------------
# Data plane: reads
# --------------------------------------------------------------------------------------------------------------

_CATALOG = Grant("registry", "catalog", frozenset({"*"}))


def _page(names: list[str], request: Request, default_n: int = 100) -> tuple[list[str], str | None]:
    """Docker-style paging over *names* (already in order): ``n`` items after ``last``.

    Returns the page and, when more remain, the ``last`` value for the next page.
    """
    last = request.q("last")
    n = int(request.q("n") or default_n)
    if last is not None:
        names = names[names.index(last) + 1:] if last in names else [x for x in names if x > last]
    page = names[:n]
    return page, (page[-1] if len(names) > n and page else None)


def _link(path: str, last: str, n: str | None, extra: str = "") -> dict[str, str]:
    query = f"last={quote(last)}" + (f"&n={n}" if n else "") + extra
    return {"Link": f'<{path}?{query}>; rel="next"'}


def _repo_not_found(repository: str) -> Response:
    return _acr_error(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": repository})


def catalog(request: Request, state: EmulatorState) -> Response:
    record = _guard(request, state, _CATALOG)
    if isinstance(record, Response):
        return record
    with state.lock:
        names = sorted(r for r, tags in _repositories(state, record.name).items() if tags)
    page, last = _page(names, request)
    headers = _link(request.path, last, request.q("n")) if last else {}
    return Response(200, {"repositories": page}, headers)


def _tags_of(state: EmulatorState, record: RegistryRecord, repository: str) -> dict[str, TagRecord] | None:
    with state.lock:
        tags = _repositories(state, record.name).get(repository)
        return dict(tags) if tags else None


def repository_properties(request: Request, state: EmulatorState) -> Response:
    repository = request.params["repo"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"metadata_read"})))
    if isinstance(record, Response):
        return record
    tags = _tags_of(state, record, repository)
    if tags is None:
        return _repo_not_found(repository)
    return Response(200, {
        "registry": record.login_server,
        "imageName": repository,
        "createdTime": min(t.created for t in tags.values()),
        "lastUpdateTime": max(t.updated for t in tags.values()),
        "manifestCount": len({t.digest for t in tags.values()}),
        "tagCount": len(tags),
        "changeableAttributes": {"deleteEnabled": True, "writeEnabled": True, "readEnabled": True,
                                 "listEnabled": True},
    })


def _ordered_tags(tags: dict[str, TagRecord], orderby: str | None) -> list[TagRecord]:
    if orderby == "timedesc":
        return sorted(tags.values(), key=lambda t: (t.updated, t.name), reverse=True)
    if orderby == "timeasc":
        return sorted(tags.values(), key=lambda t: (t.updated, t.name))
    return [tags[name] for name in sorted(tags)]


def acr_list_tags(request: Request, state: EmulatorState) -> Response:
    """``GET /acr/v1/{repo}/_tags`` (``ContainerRegistryClient.list_tag_properties``), paged with ``Link``."""
    repository = request.params["repo"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"metadata_read"})))
    if isinstance(record, Response):
        return record
    tags = _tags_of(state, record, repository)
    if tags is None:
        return _repo_not_found(repository)
    orderby = request.q("orderby")
    ordered = _ordered_tags(tags, orderby)
    names, last = _page([t.name for t in ordered], request)
    headers = _link(f"/acr/v1/{repository}/_tags", last, request.q("n"),
                    f"&orderby={orderby}" if orderby else "") if last else {}
    return Response(200, {"registry": record.login_server, "imageName": repository,
                          "tags": [tags[n].to_json() for n in names]}, headers)


def acr_get_tag(request: Request, state: EmulatorState) -> Response:
    repository, tag = request.params["repo"], request.params["tag"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"metadata_read"})))
    if isinstance(record, Response):
        return record
    found = (_tags_of(state, record, repository) or {}).get(tag)
    if found is None:
        return _acr_error(404, "TAG_UNKNOWN", f"the specified tag does not exist: {tag}", {"name": repository})
    return Response(200, {"registry": record.login_server, "imageName": repository, "tag": found.to_json()})


def acr_delete_tag(request: Request, state: EmulatorState) -> Response:
    repository, tag = request.params["repo"], request.params["tag"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"delete"})))
    if isinstance(record, Response):
        return record
    with state.lock:
        tags = _repositories(state, record.name).get(repository, {})
        if tags.pop(tag, None) is None:
            return _acr_error(404, "TAG_UNKNOWN", f"the specified tag does not exist: {tag}", {"name": repository})
    return Response(202)


def acr_delete_repository(request: Request, state: EmulatorState) -> Response:
    repository = request.params["repo"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"delete"})))
    if isinstance(record, Response):
        return record
    with state.lock:
        tags = _repositories(state, record.name).pop(repository, None)
    if not tags:
        return _repo_not_found(repository)
    return Response(202, {"manifestsDeleted": sorted({t.digest for t in tags.values()}), "tagsDeleted": sorted(tags)})


def v2_base(request: Request, state: EmulatorState) -> Response:
    """``GET /v2/``: the Docker API version check (200 when authenticated, else the challenge)."""
    record = _registry_from_host(request, state)
    if isinstance(record, Response):
        return record
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if (scheme.lower() == "basic" and _basic_principal(record, header)) or (
        scheme.lower() == "bearer" and _acr_token_claims(record, credential.strip(), "access_token")
    ):
        return Response(200, {}, {"Docker-Distribution-Api-Version": "registry/2.0"})
    challenge = f'Bearer realm="https://{record.login_server}/oauth2/token",service="{record.login_server}"'
    return _acr_error(401, "UNAUTHORIZED", "authentication required", None, **{"WWW-Authenticate": challenge})


def v2_list_tags(request: Request, state: EmulatorState) -> Response:
    """``GET /v2/{repo}/tags/list`` (Docker Registry v2), lexically ordered and paged with ``n``/``last``."""
    repository = request.params["repo"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"pull"})))
    if isinstance(record, Response):
        return record
    tags = _tags_of(state, record, repository)
    if tags is None:
        return _repo_not_found(repository)
    names, last = _page(sorted(tags), request)
    headers = _link(f"/v2/{repository}/tags/list", last, request.q("n")) if last else {}
    return Response(200, {"name": repository, "tags": names}, headers)


def _manifest(tag: TagRecord) -> bytes:
    config = hashlib.sha256(tag.digest.encode()).hexdigest()
    return (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        f'"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1024,'
        f'"digest":"sha256:{config}"}},"layers":[]}}'
    ).encode()


def v2_manifest(request: Request, state: EmulatorState) -> Response:
    """``GET|HEAD /v2/{repo}/manifests/{tag|digest}``: a stand-in manifest whose digest is the tag's."""
    repository, reference = request.params["repo"], request.params["ref"]
    record = _guard(request, state, Grant("repository", repository, frozenset({"pull"})))
    if isinstance(record, Response):
        return record
    tags = _tags_of(state, record, repository) or {}
    found = tags.get(reference) or next((t for t in tags.values() if t.digest == reference), None)
    if found is None:
        return _acr_error(404, "MANIFEST_UNKNOWN", "manifest unknown", {"Tag": reference})
    stored = image_content(state, record.name, found.digest)
    return Response(200, stored[0] if stored is not None else _manifest(found), {
        "Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
        "Docker-Content-Digest": found.digest,
        "Docker-Distribution-Api-Version": "registry/2.0",
    })


_REPO = r"(?P<repo>[a-z0-9][a-z0-9._/-]*?)"

ROUTES: list[Route] = [
    # management plane
    Route("GET", ARM_HOST, _REG, get_registry),
    Route("PATCH", ARM_HOST, _REG, update_registry),
    Route("GET", ARM_HOST, _PROVIDER + r"/registries", list_registries),
    Route("GET", ARM_HOST, r"(?i)/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerRegistry/registries",
          list_registries),
    Route("POST", ARM_HOST, _REG + r"/listCredentials", list_credentials),
    Route("POST", ARM_HOST, _REG + r"/regenerateCredential", regenerate_credential),
    Route("POST", ARM_HOST, _REG + r"/generateCredentials", generate_credentials),
    Route("POST", ARM_HOST, _REG + r"/importImage", import_image),
    Route("GET", ARM_HOST, _REG + r"/scopeMaps", list_scope_maps),
    Route("PUT", ARM_HOST, _REG + r"/scopeMaps/(?P<name>[^/]+)", put_scope_map),
    Route("PATCH", ARM_HOST, _REG + r"/scopeMaps/(?P<name>[^/]+)", put_scope_map),
    Route("GET", ARM_HOST, _REG + r"/scopeMaps/(?P<name>[^/]+)", get_scope_map),
    Route("DELETE", ARM_HOST, _REG + r"/scopeMaps/(?P<name>[^/]+)", delete_scope_map),
    Route("GET", ARM_HOST, _REG + r"/tokens", list_tokens),
    Route("PUT", ARM_HOST, _REG + r"/tokens/(?P<name>[^/]+)", put_token),
    Route("PATCH", ARM_HOST, _REG + r"/tokens/(?P<name>[^/]+)", put_token),
    Route("GET", ARM_HOST, _REG + r"/tokens/(?P<name>[^/]+)", get_token),
    Route("DELETE", ARM_HOST, _REG + r"/tokens/(?P<name>[^/]+)", delete_token),
    Route("GET", ARM_HOST, _REG + r"/operationStatuses/(?P<op>[^/]+)", get_operation_status),
    Route("GET", ARM_HOST, _REG + r"/operationResults/(?P<op>[^/]+)", get_operation_result),
    # data plane
    Route("POST", DATA_HOST, r"/oauth2/exchange", oauth2_exchange),
    Route("POST", DATA_HOST, r"/oauth2/token", oauth2_token_post),
    Route("GET", DATA_HOST, r"/oauth2/token", oauth2_token_get),
    Route("GET", DATA_HOST, r"/acr/v1/_catalog", catalog),
    Route("GET", DATA_HOST, r"/acr/v1/" + _REPO + r"/_tags", acr_list_tags),
    Route("GET", DATA_HOST, r"/acr/v1/" + _REPO + r"/_tags/(?P<tag>[^/]+)", acr_get_tag),
    Route("DELETE", DATA_HOST, r"/acr/v1/" + _REPO + r"/_tags/(?P<tag>[^/]+)", acr_delete_tag),
    Route("GET", DATA_HOST, r"/acr/v1/" + _REPO, repository_properties),
    Route("DELETE", DATA_HOST, r"/acr/v1/" + _REPO, acr_delete_repository),
    Route("GET", DATA_HOST, r"/v2/?", v2_base),
    Route("GET", DATA_HOST, r"/v2/_catalog", catalog),
    Route("GET", DATA_HOST, r"/v2/" + _REPO + r"/tags/list", v2_list_tags),
    Route("GET", DATA_HOST, r"/v2/" + _REPO + r"/manifests/(?P<ref>[^/]+)", v2_manifest),
    Route("HEAD", DATA_HOST, r"/v2/" + _REPO + r"/manifests/(?P<ref>[^/]+)", v2_manifest),
]
