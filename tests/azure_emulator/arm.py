"""ARM and AAD routes: the Azure ML workspace resource, subscriptions, cloud metadata and tokens.

What is served (all through the MITM proxy, so the real SDKs keep their stock URLs):

* ``management.azure.com``: ``GET {ws}`` (the AML workspace; any ``api-version``), ``POST {ws}/listKeys``
  (the workspace's ACR admin credentials, as ``Model.package(...).get_container_registry()`` reads them),
  ``GET /subscriptions[/{sub}]`` (for auth classes that list subscriptions) and
  ``GET /metadata/endpoints`` (cloud metadata, fetched by azureml when no cloud name is known).
* ``login.microsoftonline.com``: tenant discovery, instance discovery and the v2 / v1 token endpoints, so
  ``azure.identity.ClientSecretCredential`` and azureml's ``ServicePrincipalAuthentication`` work unmodified.
  Tokens are *unsigned* JWTs (``alg: none``) with ``exp``: the SDKs decode them without verifying.

State: ``state.service("arm")`` holds ``workspaces`` (``ResourceKey`` -> ``WorkspaceRecord``) and
``subscriptions`` (id -> tenant id); ``state.service("aad")`` holds optional ``clients`` (client id -> secret;
empty means every client id / secret is accepted) and ``issued`` (a count of tokens handed out).
Seed a workspace with ``add_workspace`` (it also creates the workspace's container registry in the ACR module).

**ARM's throttling of a subscription's reads**, opt-in (``throttle_reads``; off by default, so request counts
stay as they are): a token bucket per subscription and principal in front of every ``management.azure.com`` read,
whichever module's route answers it (``MIDDLEWARE``). See ``ReadBucket`` and ``throttle_subscription_reads``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from .framework import EmulatorState, Middleware, Request, Response, Route, error

ARM_HOST = r"management\.azure\.com"
AAD_HOST = r"login\.microsoftonline\.com"
ARM_AUDIENCE = "https://management.azure.com/"
DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000e7e7"
TOKEN_LIFETIME_S = 3600

# ARM paths are case-insensitive ("resourcegroups" and "resourceGroups" both occur in the wild).
_WS = (
    r"(?i)/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)


# --------------------------------------------------------------------------------------------------------------
# Tokens shared by every module
# --------------------------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """An ``alg: none`` JWT. The payload is padded until its base64 has no ``-``/``_``.

    azure-containerregistry's ``_parse_exp_time`` decodes the payload with *standard* base64, so a url-safe
    character would make it read a garbled ``exp``; a filler claim keeps the token readable by both decoders.
    """
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    for filler in range(64):
        body = dict(claims, **({"pad": "p" * filler} if filler else {}))
        payload = _b64url(json.dumps(body, separators=(",", ":")).encode())
        if "-" not in payload and "_" not in payload:
            break
    return f"{header}.{payload}."


def decode_jwt(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified; ``None`` when the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def access_token(audience: str, tenant_id: str, client_id: str, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_S,
        "tid": tenant_id,
        "appid": client_id,
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
        **extra,
    }
    return unsigned_jwt(claims)


def bearer_claims(request: Request) -> dict[str, Any] | None:
    """Claims of the request's unexpired ``Authorization: Bearer <jwt>``, else ``None``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    claims = decode_jwt(token.strip())
    if claims is None or float(claims.get("exp", 0)) < time.time():
        return None
    return claims


def require_bearer(request: Request) -> Response | None:
    """The ARM 401 when the request carries no usable bearer token; ``None`` when it does."""
    if bearer_claims(request) is not None:
        return None
    return error(
        401,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing or its bearer token is expired.",
        **{"WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{DEFAULT_TENANT}"'},
    )


def require_api_version(request: Request) -> Response | None:
    if request.q("api-version"):
        return None
    return error(
        400,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


# --------------------------------------------------------------------------------------------------------------
# Workspaces
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceKey:
    """An ARM resource identity; ARM names compare case-insensitively, so the parts are lower-cased."""

    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def of(cls, subscription_id: str, resource_group: str, name: str) -> ResourceKey:
        return cls(subscription_id.lower(), resource_group.lower(), name.lower())


@dataclass
class WorkspaceRecord:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    registry_name: str
    storage_account: str
    tenant_id: str
    workspace_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now_iso)

    @property
    def key(self) -> ResourceKey:
        return ResourceKey.of(self.subscription_id, self.resource_group, self.name)

    @property
    def rg_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    @property
    def arm_id(self) -> str:
        return f"{self.rg_id}/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"

    @property
    def registry_id(self) -> str:
        return f"{self.rg_id}/providers/Microsoft.ContainerRegistry/registries/{self.registry_name}"

    @property
    def storage_id(self) -> str:
        return f"{self.rg_id}/providers/Microsoft.Storage/storageAccounts/{self.storage_account}"

    @property
    def discovery_url(self) -> str:
        return f"https://{self.location}.api.azureml.ms/discovery"

    def to_json(self) -> dict[str, Any]:
        """The shape of ``_base_sdk_common/workspace/models/workspace.py`` (api-version 2022-05-01)."""
        return {
            "id": self.arm_id,
            "name": self.name,
            "type": "Microsoft.MachineLearningServices/workspaces",
            "location": self.location,
            "tags": {},
            "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {
                "type": "SystemAssigned",
                "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.arm_id)),
                "tenantId": self.tenant_id,
            },
            "systemData": {"createdAt": self.created, "createdByType": "User"},
            "properties": {
                "workspaceId": self.workspace_id,
                "friendlyName": self.name,
                "description": "",
                "creationTime": self.created,
                "storageAccount": self.storage_id,
                "containerRegistry": self.registry_id,
                "keyVault": f"{self.rg_id}/providers/Microsoft.KeyVault/vaults/kv{self.workspace_id[:8]}",
                "applicationInsights": (
                    f"{self.rg_id}/providers/Microsoft.Insights/components/ai{self.workspace_id[:8]}"
                ),
                "discoveryUrl": self.discovery_url,
                "provisioningState": "Succeeded",
                "hbiWorkspace": False,
                "v1LegacyMode": False,
                "publicNetworkAccess": "Enabled",
                "storageHnsEnabled": False,
                "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0{self.arm_id}",
            },
        }


def add_workspace(
    state: EmulatorState,
    subscription_id: str,
    resource_group: str,
    name: str,
    *,
    location: str = "westeurope",
    registry_name: str = "emuacr",
    storage_account: str = "emustorage",
    tenant_id: str = DEFAULT_TENANT,
    registry_admin_enabled: bool = True,
    registry_login_server: str | None = None,
) -> WorkspaceRecord:
    """Create an AML workspace (and, in the ACR module, its registry, whose admin user AML enables)."""
    from . import acr  # acr imports this module for its tokens

    record = WorkspaceRecord(subscription_id, resource_group, name, location, registry_name, storage_account, tenant_id)
    with state.lock:
        state.service("arm").setdefault("workspaces", {})[record.key] = record
        state.service("arm").setdefault("subscriptions", {})[subscription_id] = tenant_id
        if acr.find_registry(state, registry_name) is None:
            acr.add_registry(
                state, subscription_id, resource_group, registry_name, location=location,
                admin_user_enabled=registry_admin_enabled, login_server=registry_login_server,
            )
    return record


def find_workspace(
    state: EmulatorState, subscription_id: str, resource_group: str, name: str
) -> WorkspaceRecord | None:
    with state.lock:
        workspaces: dict[ResourceKey, WorkspaceRecord] = state.service("arm").get("workspaces", {})
        return workspaces.get(ResourceKey.of(subscription_id, resource_group, name))


def workspace_or_error(state: EmulatorState, request: Request) -> WorkspaceRecord | Response:
    """The workspace named by the route's ``sub``/``rg``/``ws`` groups, or ARM's 404."""
    p = request.params
    record = find_workspace(state, p["sub"], p["rg"], p["ws"])
    if record is not None:
        return record
    return error(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.MachineLearningServices/workspaces/{p['ws']}' under resource group "
        f"'{p['rg']}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def _guarded(request: Request) -> Response | None:
    return require_api_version(request) or require_bearer(request)


def get_workspace(request: Request, state: EmulatorState) -> Response:
    if (failure := _guarded(request)) is not None:
        return failure
    record = workspace_or_error(state, request)
    return record if isinstance(record, Response) else Response(200, record.to_json())


def list_workspace_keys(request: Request, state: EmulatorState) -> Response:
    """``POST {ws}/listKeys``. ``containerRegistryCredentials`` is left out when the registry's admin user is off.

    (What the live service answers then is not known here; azureml turns the missing key into
    ``WebserviceException('Unable to retrieve workspace keys ...')``.)
    """
    from . import acr

    if (failure := _guarded(request)) is not None:
        return failure
    record = workspace_or_error(state, request)
    if isinstance(record, Response):
        return record
    body: dict[str, Any] = {
        "userStorageKey": base64.b64encode(f"{record.storage_account}-key".encode()).decode(),
        "userStorageResourceId": record.storage_id,
        "appInsightsInstrumentationKey": str(uuid.uuid5(uuid.NAMESPACE_URL, record.arm_id + "/ai")),
        "notebookAccessKeys": {"primaryAccessKey": "emu-nb-1", "secondaryAccessKey": "emu-nb-2"},
    }
    registry = acr.find_registry(state, record.registry_name)
    if registry is not None and registry.admin_user_enabled:
        body["containerRegistryCredentials"] = {
            "location": registry.location,
            "username": registry.name,
            "passwords": [{"name": n, "value": v} for n, v in registry.passwords.items()],
        }
    return Response(200, body)


# --------------------------------------------------------------------------------------------------------------
# Subscriptions and cloud metadata
# --------------------------------------------------------------------------------------------------------------


def _subscription_json(subscription_id: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription_id}",
        "subscriptionId": subscription_id,
        "tenantId": tenant_id,
        "displayName": f"Emulated subscription {subscription_id[:8]}",
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
        "authorizationSource": "RoleBased",
    }


def list_subscriptions(request: Request, state: EmulatorState) -> Response:
    if (failure := _guarded(request)) is not None:
        return failure
    with state.lock:
        subscriptions = dict(state.service("arm").get("subscriptions", {}))
    return Response(200, {"value": [_subscription_json(s, t) for s, t in subscriptions.items()]})


def get_subscription(request: Request, state: EmulatorState) -> Response:
    if (failure := _guarded(request)) is not None:
        return failure
    sub = request.params["sub"]
    with state.lock:
        tenant = state.service("arm").get("subscriptions", {}).get(sub)
    if tenant is None:
        return error(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
    return Response(200, _subscription_json(sub, tenant))


def cloud_metadata(request: Request, state: EmulatorState) -> Response:
    """``GET /metadata/endpoints``: the public-cloud entry (the list shape of api-version 2019-05-01)."""
    return Response(200, [{
        "name": "AzureCloud",
        "portal": "https://portal.azure.com",
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com/",
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "media": "https://rest.media.azure.net",
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "resourceManager": "https://management.azure.com/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "batch": "https://batch.core.windows.net/",
        "gallery": "https://gallery.azure.com/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/"
                           "quickstart-templates/aliases.json",
        "suffixes": {
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
        },
    }])


# --------------------------------------------------------------------------------------------------------------
# AAD
# --------------------------------------------------------------------------------------------------------------

_GENERIC_TENANTS = {"common", "organizations", "consumers"}


def _tenant(raw: str) -> str:
    return DEFAULT_TENANT if raw.lower() in _GENERIC_TENANTS else raw


def openid_configuration(request: Request, state: EmulatorState) -> Response:
    base = f"https://login.microsoftonline.com/{request.params['tenant']}"
    tenant = _tenant(request.params["tenant"])
    v2 = "/v2.0" if request.params.get("v2") else ""
    return Response(200, {
        "token_endpoint": f"{base}/oauth2{v2}/token",
        "authorization_endpoint": f"{base}/oauth2{v2}/authorize",
        "device_authorization_endpoint": f"{base}/oauth2{v2}/devicecode",
        "end_session_endpoint": f"{base}/oauth2{v2}/logout",
        "issuer": f"https://login.microsoftonline.com/{tenant}{v2}" if v2 else f"https://sts.windows.net/{tenant}/",
        "jwks_uri": f"{base}/discovery{v2}/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    })


def instance_discovery(request: Request, state: EmulatorState) -> Response:
    tenant = DEFAULT_TENANT
    return Response(200, {
        "tenant_discovery_endpoint": f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": "login.microsoftonline.com",
            "preferred_cache": "login.windows.net",
            "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
        }],
    })


def _aad_error(status: int, code: str, description: str) -> Response:
    return Response(status, {"error": code, "error_description": description, "error_codes": [7000215],
                             "timestamp": now_iso(), "trace_id": str(uuid.uuid4())})


def _client_check(state: EmulatorState, form: dict[str, str]) -> Response | None:
    """Only when ``state.service("aad")["clients"]`` is seeded are client ids and secrets checked."""
    with state.lock:
        clients: dict[str, str] = state.service("aad").get("clients", {})
    client_id = form.get("client_id", "")
    if not client_id:
        return _aad_error(400, "invalid_request", "AADSTS900144: The request body must contain 'client_id'.")
    if clients and clients.get(client_id) != form.get("client_secret"):
        return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
    return None


def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}


def _count_token(state: EmulatorState) -> None:
    with state.lock:
        aad = state.service("aad")
        aad["issued"] = aad.get("issued", 0) + 1


def token_v2(request: Request, state: EmulatorState) -> Response:
    """``POST /{tenant}/oauth2/v2.0/token`` (MSAL: client_credentials; refresh_token is accepted too)."""
    form = _form(request)
    if form.get("grant_type") not in {"client_credentials", "refresh_token", "password"}:
        return _aad_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
    if (failure := _client_check(state, form)) is not None:
        return failure
    scope = next((s for s in form.get("scope", "").split() if s.endswith("/.default")), ARM_AUDIENCE + ".default")
    audience = scope[: -len(".default")].rstrip("/")
    _count_token(state)
    return Response(200, {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_S - 1,
        "ext_expires_in": TOKEN_LIFETIME_S - 1,
        "access_token": access_token(audience, _tenant(request.params["tenant"]), form["client_id"]),
    })


def token_v1(request: Request, state: EmulatorState) -> Response:
    """``POST /{tenant}/oauth2/token`` (ADAL-style ``resource`` instead of ``scope``)."""
    form = _form(request)
    if (failure := _client_check(state, form)) is not None:
        return failure
    resource = form.get("resource", ARM_AUDIENCE)
    _count_token(state)
    now = int(time.time())
    return Response(200, {
        "token_type": "Bearer",
        "expires_in": str(TOKEN_LIFETIME_S - 1),
        "expires_on": str(now + TOKEN_LIFETIME_S - 1),
        "not_before": str(now),
        "resource": resource,
        "access_token": access_token(resource, _tenant(request.params["tenant"]), form["client_id"]),
    })


# --------------------------------------------------------------------------------------------------------------
# IoT Hub resources (Microsoft.Devices/IotHubs): only what `reconciler doctor` reads, the SKU and units
# --------------------------------------------------------------------------------------------------------------


def add_iot_hub(state: EmulatorState, subscription_id: str, resource_group: str, host_name: str, *,
                sku: str = "S1", capacity: int = 1, location: str = "westeurope") -> dict[str, Any]:
    """Make the hub at ``host_name`` visible on ARM (the data plane is ``iothub.py``'s, seeded separately)."""
    name = host_name.split(".")[0]
    tiers = {"F": "Free", "B": "Basic", "S": "Standard"}
    resource = {
        "id": f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Devices"
              f"/IotHubs/{name}",
        "name": name, "type": "Microsoft.Devices/IotHubs", "location": location, "tags": {}, "etag": "AAAA",
        "sku": {"name": sku, "tier": tiers.get(sku[:1], "Standard"), "capacity": capacity},
        "properties": {"hostName": host_name, "state": "Active", "provisioningState": "Succeeded"},
    }
    with state.lock:
        state.service("arm").setdefault("iothubs", {})[host_name.lower()] = resource
        state.service("arm").setdefault("subscriptions", {}).setdefault(subscription_id, DEFAULT_TENANT)
    return resource


def list_iot_hubs(request: Request, state: EmulatorState) -> Response:
    """``GET /subscriptions/{sub}/providers/Microsoft.Devices/IotHubs`` (IotHubResource_ListBySubscription)."""
    if (failure := _guarded(request)) is not None:
        return failure
    prefix = f"/subscriptions/{request.params['sub']}/".lower()
    with state.lock:
        hubs = [hub for hub in state.service("arm").get("iothubs", {}).values() if hub["id"].lower().startswith(prefix)]
    return Response(200, {"value": hubs})


# --------------------------------------------------------------------------------------------------------------
# ARM's throttling of a subscription's reads (opt-in)
# --------------------------------------------------------------------------------------------------------------
#
# Grounded in Microsoft's "Understand how Azure Resource Manager throttles requests"
# (learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling), section
# "Regional throttling and token bucket algorithm": subscription reads have a bucket of 250 tokens refilled at 25
# per second; "the subscription limits apply per subscription, per service principal, and per operation type".
# Section "Error code": over the limit, "429 Too many requests" with a "Retry-After" value, the seconds to wait;
# a request sent before that is not processed. Section "Remaining requests": read requests carry
# "x-ms-ratelimit-remaining-subscription-reads", "Subscription scoped reads remaining. This value is returned on
# read operations."
#
# The 429's body: the ARM ErrorResponse with the code "SubscriptionRequestsThrottled" (Microsoft's "Troubleshoot
# the TooManyRequestsReceived or SubscriptionRequestsThrottled error code", learn.microsoft.com/troubleshoot/azure/
# azure-kubernetes/error-code-toomanyrequestsreceived-subscriptionrequeststhrottled; the ARM doc names no code)
# and the token bucket's message as a live ARM sent it (velero-io/velero#9171, 2025: "Number of 'read' requests
# for subscription '...' actor '...' exceeded. Please try again after '1' seconds after additional tokens are
# available. Refer to https://aka.ms/arm-throttling for additional information.").
#
# Not modelled: the buckets of writes and deletes (200, refill 10), tenant-level reads (``GET /subscriptions``,
# ``/tenants``), the global limit across principals (15 times a principal's), and resource providers' own limits.

SUBSCRIPTION_READS_BUCKET = 250  # tokens (the doc's bucket size for subscription reads)
SUBSCRIPTION_READS_REFILL = 25.0  # tokens per second
REMAINING_READS_HEADER = "x-ms-ratelimit-remaining-subscription-reads"
_SUBSCRIPTION_SCOPED = re.compile(r"(?i)/subscriptions/(?P<sub>[^/]+)(?:/.*)?")
_READS = ("GET", "HEAD")


@dataclass(frozen=True)
class Admission:
    """A bucket's answer to one request: ``admitted`` with ``remaining`` whole tokens left, or refused until
    ``retry_after`` whole seconds have passed (ARM sends whole seconds, at least 1)."""

    admitted: bool
    remaining: int = 0
    retry_after: int = 0


@dataclass
class ReadBucket:
    """A token bucket per key (subscription, principal): ``size`` tokens, ``refill`` tokens per second up to
    ``size``; each admitted request takes one, a refused one takes none. ``admitted``/``refused`` count answers
    (for tests and benchmarks)."""

    size: int = SUBSCRIPTION_READS_BUCKET
    refill: float = SUBSCRIPTION_READS_REFILL
    clock: Callable[[], float] = time.monotonic
    admitted: int = 0
    refused: int = 0
    _levels: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, when)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: Hashable) -> Admission:
        with self._lock:
            now = self.clock()
            tokens, when = self._levels.get(key, (float(self.size), now))
            tokens = min(float(self.size), tokens + (now - when) * self.refill)
            if tokens >= 1:
                self._levels[key] = (tokens - 1, now)
                self.admitted += 1
                return Admission(True, remaining=int(tokens - 1))
            self._levels[key] = (tokens, now)
            self.refused += 1
            return Admission(False, retry_after=max(1, math.ceil((1 - tokens) / self.refill)))


def throttle_reads(state: EmulatorState, size: int = SUBSCRIPTION_READS_BUCKET,
                   refill: float = SUBSCRIPTION_READS_REFILL,
                   clock: Callable[[], float] = time.monotonic) -> ReadBucket:
    """Turn ARM's throttling of subscription reads on, with a full bucket (again: a fresh one); returns it."""
    bucket = ReadBucket(size, refill, clock)
    with state.lock:
        state.service("arm")["read_bucket"] = bucket
    return bucket


def stop_throttling_reads(state: EmulatorState) -> None:
    with state.lock:
        state.service("arm").pop("read_bucket", None)


def throttle_subscription_reads(request: Request, state: EmulatorState, answer: Callable[[Request], Response]
                                ) -> Response:
    """The ``Middleware``: a subscription-scoped read on ARM by an authenticated principal takes a token from
    its bucket, or is answered 429 without reaching its route. Off (every request goes straight to ``answer``)
    until ``throttle_reads``. A request without a usable token is left to the route's 401."""
    with state.lock:
        bucket: ReadBucket | None = state.service("arm").get("read_bucket")
    scoped = _SUBSCRIPTION_SCOPED.fullmatch(request.path)
    claims = bearer_claims(request) if bucket is not None and scoped is not None else None
    if (bucket is None or scoped is None or claims is None or request.method not in _READS
            or re.fullmatch(ARM_HOST, request.host) is None):
        return answer(request)
    subscription = scoped["sub"]
    principal = str(claims.get("oid") or claims.get("appid") or "")
    admission = bucket.take((subscription.lower(), principal))
    if not admission.admitted:
        seconds = admission.retry_after
        return error(429, "SubscriptionRequestsThrottled",
                     f"Number of 'read' requests for subscription '{subscription}' actor '{principal}' exceeded. "
                     f"Please try again after '{seconds}' seconds after additional tokens are available. Refer to "
                     "https://aka.ms/arm-throttling for additional information.", **{"Retry-After": str(seconds)})
    response = answer(request)
    response.headers = {**response.headers, REMAINING_READS_HEADER: str(admission.remaining)}
    return response


MIDDLEWARE: list[Middleware] = [throttle_subscription_reads]

ROUTES: list[Route] = [
    Route("GET", ARM_HOST, _WS, get_workspace),
    Route("GET", ARM_HOST, r"(?i)/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Devices/IotHubs", list_iot_hubs),
    Route("POST", ARM_HOST, _WS + r"/listKeys", list_workspace_keys),
    Route("GET", ARM_HOST, r"(?i)/subscriptions/?", list_subscriptions),
    Route("GET", ARM_HOST, r"(?i)/subscriptions/(?P<sub>[^/]+)", get_subscription),
    Route("GET", ARM_HOST, r"/metadata/endpoints", cloud_metadata),
    Route("GET", AAD_HOST, r"/(?P<tenant>[^/]+)(?P<v2>/v2\.0)?/\.well-known/openid-configuration",
          openid_configuration),
    Route("GET", AAD_HOST, r"/common/discovery/instance", instance_discovery),
    Route("POST", AAD_HOST, r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", token_v2),
    Route("POST", AAD_HOST, r"/(?P<tenant>[^/]+)/oauth2/token", token_v1),
]
