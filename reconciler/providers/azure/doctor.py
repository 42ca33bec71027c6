"""``reconciler doctor`` on Azure: what an apply needs, checked against the real hub, registries and workspace.

Read-only by default. Every check is a ``Check`` (``providers.base``); a failure is reported, never raised,
so one missing role does not hide the others. In order:

1. the Azure credential (a token for Azure Resource Manager);
2. IoT Hub: listing the configurations (the role every plan needs), the 100 + 100 configuration slots;
3. the hub's ARM resource: SKU and units, hence the query and configuration-write quotas (reading it needs
   Reader on the hub, which an apply does not: a refusal is a warning, not a failure);
4. each declared registry: reading it (its login server), then the credentials the environment uses:
   listing tokens and scope maps (``scopedToken``), or the admin credentials (``adminUser``);
5. Azure ML: listing the environment's models (the role that registers them);
6. the api-versions the SDKs in use send.

``write_probe`` adds a throwaway deployment, ``er-doctor-probe-<random>``, that targets no device and embeds
a dummy registry credential: it is created, read back (is the password readable in ``GET`` and in the
listing? what do the metrics say right after creation?) and deleted, even when a step fails. It is not
labelled as owned by any environment, so no plan ever touches it.

Roles named in the messages are the built-in ones that suffice; a custom role with the same actions works too.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.errors import ProviderError
from reconciler.model import ownership
from reconciler.providers.azure import errors
from reconciler.providers.azure.auth import IOTHUB_TOP, hub_access, registry_client
from reconciler.providers.azure.iothub import IoTHub, is_edge_deployment, modules_content
from reconciler.providers.azure.registry import ADMIN_USER, token_prefix, token_version
from reconciler.providers.base import Check

if TYPE_CHECKING:
    from reconciler.providers.azure.provider import AzureProvider

T = TypeVar("T")

ARM = "https://management.azure.com"
IOTHUB_ARM_API_VERSION = "2023-06-30"  # Microsoft.Devices/IotHubs, read for the SKU and units
ACR_DATA_PLANE_API_VERSION = "2021-07-01"  # what azure-containerregistry 1.2 sends
MMS_ROUTE = "/modelmanagement/v1.0"  # azureml-core v1's model management routes (no api-version parameter)
EDGE_SLOTS = 100  # IoT Edge deployments per paid hub (layered ones included)
ADM_SLOTS = 100  # automatic device configurations per hub, counted apart
FREE_SLOTS = 10  # either kind, on the free tier (F1)
WARN_ABOVE = 90  # percent of the edge deployment slots: a replace needs a free slot, and rollouts need several
# Queries per minute and unit (IoT Hub quotas and throttling; F1's 20 is for the hub, it has one unit).
QUERIES_PER_UNIT = {"F1": 20, "B1": 20, "B2": 20, "B3": 1000, "S1": 20, "S2": 20, "S3": 1000}
CONFIGURATION_WRITES_PER_UNIT = 20  # per minute, every tier
PROBE_PREFIX = "er-doctor-probe-"
PROBE_DEVICE = "er-doctor-probe-no-such-device"
PROBE_REGISTRY = "doctorprobe"
PROBE_LABEL = "edge-reconciler-doctor"

IOTHUB_ROLE = ("grant the identity \"IoT Hub Data Contributor\" on the hub, or use a connection string of a shared "
               "access policy with registry read, registry write and service connect")
REGISTRY_READ_ROLE = "grant the identity \"Reader\" (or \"Contributor\") on the registry"
TOKEN_ROLE = ("grant the identity \"Contributor\" on the registry: tokens, scope maps and generateCredentials are "
              "management-plane writes (AcrPull and AcrPush do not allow them)")
ADMIN_ROLE = ("grant the identity \"Contributor\" on the registry (listCredentials), and enable the admin user, or "
              "switch to `credentials: scopedToken`")
MODEL_ROLE = "grant the identity \"AzureML Data Scientist\" (or \"Contributor\") on the workspace"


def diagnose(provider: AzureProvider, *, write_probe: bool = False) -> list[Check]:
    checks: list[Check] = []
    signed_in = _credential(provider, checks)
    configurations = _hub(provider, checks)
    sku = _hub_resource(provider, checks, signed_in)
    if configurations is not None:
        _slots(provider, configurations, sku, checks)
    login_server = _registries(provider, checks, signed_in)
    _workspace(provider, checks, signed_in)
    _api_versions(checks, provider.ml_sdk)
    if write_probe:
        if configurations is None:
            checks.append(Check("write probe", Check.FAIL, "not run: the hub's configurations cannot be listed",
                                "fix the IoT Hub check above first"))
        else:
            _probe(provider, checks, login_server)
    return checks


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _attempt(fn: Callable[[], T]) -> tuple[T | None, errors.Failure | None, str]:
    """``(result, None, "")`` or ``(None, failure, message)``: the failure as the SDK reported it (status, code)
    and the provider's message (scrubbed, with its advice)."""
    try:
        return fn(), None, ""
    except ProviderError as exc:
        cause = exc.__cause__
        failure = errors.describe(cause) if cause is not None else None
        return None, failure, errors.scrub(exc.message)
    except Exception as exc:  # noqa: BLE001 - a check must never crash the checklist
        failure = errors.describe(exc)
        return None, failure, errors.summary(failure)


def _refused(failure: errors.Failure | None) -> bool:
    return failure is not None and failure.status in (401, 403)


def _failed(name: str, failure: errors.Failure | None, message: str, role: str, role_name: str) -> Check:
    """A failed check: a missing role says which, anything else says what the service said."""
    if failure is not None and failure.status == 403:
        return Check(name, Check.FAIL, f"missing role: the identity may not {role_name} ({errors.summary(failure)})",
                     role)
    if failure is not None and (failure.status == 401 or failure.kind == errors.CREDENTIAL):
        return Check(name, Check.FAIL, f"not signed in: {errors.summary(failure)}", errors.CREDENTIAL_ADVICE)
    return Check(name, Check.FAIL, message or "failed", "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------------------------


def _credential(provider: AzureProvider, checks: list[Check]) -> bool:
    name = "Azure credential"
    _, failure, message = _attempt(lambda: provider.retrier.call(
        lambda: provider.credential.get_token(f"{ARM}/.default"), what="the Azure credential", write=False))
    if failure is None and not message:
        checks.append(Check(name, Check.OK, "the credential chain issued a token for Azure Resource Manager"))
        return True
    checks.append(Check(name, Check.FAIL, f"no token for Azure Resource Manager: {message}",
                        "sign in: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or a federated token "
                        "in CI), a managed identity, or `az login`"))
    return False


def _hub(provider: AzureProvider, checks: list[Check]) -> list[Any] | None:
    host = str(provider._iot_hub["hostName"])
    name = f"IoT Hub {host}: list deployments"
    try:
        access = hub_access(provider._iot_hub)
    except ProviderError as exc:
        checks.append(Check(name, Check.FAIL, exc.message, "see the message"))
        return None
    configurations, failure, message = _attempt(provider.hub.list_configurations)
    if configurations is None:
        checks.append(_failed(name, failure, message, IOTHUB_ROLE, "read the hub's configurations"))
        return None
    checks.append(Check(name, Check.OK, f"with {access.source}: {len(configurations)} configurations listed"))
    return configurations


def _slots(provider: AzureProvider, configurations: list[Any], sku: str | None, checks: list[Check]) -> None:
    """IoT Edge deployments and automatic device configurations, counted apart against their limits."""
    slots = FREE_SLOTS if sku == "F1" else EDGE_SLOTS
    edge = [cfg for cfg in configurations if is_edge_deployment(cfg)]
    owned = sum(1 for cfg in edge if ownership.owner_of(dict(cfg.labels or {})) == provider.name)
    adm = len(configurations) - len(edge)
    detail = (f"{len(edge)} of {slots} IoT Edge deployment slots used ({owned} by environment {provider.name}), "
              f"{adm} of {FREE_SLOTS if sku == 'F1' else ADM_SLOTS} automatic device configurations")
    if len(configurations) >= IOTHUB_TOP:
        detail += f"; the listing returned {IOTHUB_TOP}, the most one call asks for, so there may be more"
    name = "IoT Hub: configuration slots"
    if len(edge) >= slots:
        checks.append(Check(name, Check.FAIL, detail, "delete deployments nobody uses: replacing a deployment "
                                                      "creates the new one before it deletes the old, so an apply "
                                                      "needs a free slot"))
    elif len(edge) > slots * WARN_ABOVE // 100:
        checks.append(Check(name, Check.WARN, detail, "few slots left: every replace needs one while it runs"))
    else:
        checks.append(Check(name, Check.OK, detail))


def _hub_resource(provider: AzureProvider, checks: list[Check], signed_in: bool) -> str | None:
    """The hub's SKU and units, from ARM (``IotHubResource_ListBySubscription``, matched by host name); returns
    the SKU name when it could be read."""
    host = str(provider._iot_hub["hostName"]).lower()
    name = "IoT Hub: SKU and quotas"
    default = (f"the query quota is then unknown: S1 with 1 unit allows {QUERIES_PER_UNIT['S1']} queries and "
               f"{CONFIGURATION_WRITES_PER_UNIT} configuration writes per minute")
    if not signed_in:
        checks.append(Check(name, Check.WARN, f"not read: no Azure credential; {default}"))
        return None

    def read() -> dict[str, Any] | None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
        from azure.core.rest import HttpRequest

        # No azure-mgmt-iothub for one GET: a bare pipeline with the same credential, without retries of its own.
        policies = [RetryPolicy(retry_total=0), BearerTokenCredentialPolicy(provider.credential, f"{ARM}/.default")]
        client: Any = PipelineClient(ARM, policies=policies)
        try:
            url: str | None = (f"{ARM}/subscriptions/{provider.subscription_id}/providers/Microsoft.Devices/IotHubs"
                               f"?api-version={IOTHUB_ARM_API_VERSION}")
            pages = 0
            while url and pages < 20:
                response = client.send_request(HttpRequest("GET", url))
                response.raise_for_status()
                body = response.json()
                for hub in body.get("value") or []:
                    if str((hub.get("properties") or {}).get("hostName", "")).lower() == host:
                        return dict(hub)
                url, pages = body.get("nextLink"), pages + 1
            return None
        finally:
            client.close()

    hub, failure, message = _attempt(lambda: provider.retrier.call(read, what="IoT Hub resources", write=False))
    if failure is not None or message:
        why = message
        if failure is not None and _refused(failure):
            why = (f"the identity may not read the hub's Azure resource ({errors.summary(failure)}; Reader on the "
                   "hub allows it, an apply does not need it)")
        checks.append(Check(name, Check.WARN, f"{why}; {default}"))
        return None
    if hub is None:
        checks.append(Check(name, Check.WARN, f"no hub with host name {host} in subscription "
                                              f"{provider.subscription_id}; {default}"))
        return None
    sku = dict(hub.get("sku") or {})
    sku_name, units = str(sku.get("name", "?")), int(sku.get("capacity") or 1)
    per_unit = QUERIES_PER_UNIT.get(sku_name)
    queries = per_unit if sku_name == "F1" else (per_unit * units if per_unit else None)
    quota = (f"{queries} queries per minute" if queries else "an undocumented query quota") + \
        f", {CONFIGURATION_WRITES_PER_UNIT * units} configuration writes per minute"
    status, fix = Check.OK, ""
    if sku_name.startswith("B"):
        status, fix = Check.FAIL, "the Basic tier has no IoT Edge deployments: move the hub to a Standard tier"
    elif sku_name.startswith("F"):
        status, fix = Check.WARN, (f"the free tier allows {FREE_SLOTS} deployments and {QUERIES_PER_UNIT['F1']} "
                                   "queries per minute: enough to try, not for a fleet")
    checks.append(Check(name, status, f"{sku_name}, {units} unit{'s' if units != 1 else ''}: {quota}", fix))
    return sku_name


def _registries(provider: AzureProvider, checks: list[Check], signed_in: bool) -> str | None:
    """Each declared registry; returns the login server of the first one that could be read."""
    first: str | None = None
    specs = provider.environment.registries
    if not specs:
        checks.append(Check("registries", Check.INFO, "environment.yaml declares no registry"))
        return None
    client = registry_client(provider.credential, provider.subscription_id, provider.stats) if signed_in else None
    try:
        for registry in sorted(specs):
            first = _registry(provider, client, registry, checks) or first
    finally:
        if client is not None:
            client.close()
    return first


def _registry(provider: AzureProvider, client: Any, registry: str, checks: list[Check]) -> str | None:
    name = f"registry {registry}: read"
    if client is None:
        checks.append(Check(name, Check.FAIL, "not checked: no Azure credential", "fix the Azure credential first"))
        return None
    ref, failure, message = _attempt(lambda: provider.registries.ref(registry))
    if ref is None:
        checks.append(_failed(name, failure, message, MODEL_ROLE, "read the workspace (to find its registry)"))
        return None
    what = f"registry {registry} (ACR {ref.acr})"
    found, failure, message = _attempt(lambda: provider.retrier.call(
        lambda: client.registries.get(ref.resource_group, ref.acr), what=what, write=False))
    if found is None:
        checks.append(_failed(name, failure, message, REGISTRY_READ_ROLE, f"read the registry {ref.acr}"))
        return None
    login_server = str(found.login_server)
    note = "" if login_server.lower() == f"{ref.acr}.azurecr.io".lower() else \
        f" (not {ref.acr}.azurecr.io: images and pull credentials use {login_server})"
    checks.append(Check(name, Check.OK, f"ACR {ref.acr} in {ref.resource_group}, login server {login_server}{note}"))
    if ref.mode == ADMIN_USER:
        name = f"registry {registry}: admin credentials"
        if not found.admin_user_enabled:
            checks.append(Check(name, Check.FAIL, "the admin user is disabled and environment.yaml asks for it",
                                f"az acr update --name {ref.acr} --admin-enabled true, or `credentials: scopedToken`"))
            return login_server
        result, failure, message = _attempt(lambda: provider.retrier.call(
            lambda: client.registries.list_credentials(ref.resource_group, ref.acr), what=what, write=False))
        if result is None:
            checks.append(_failed(name, failure, message, ADMIN_ROLE, "list the registry's admin credentials"))
        else:
            for password in result.passwords or []:
                errors.register_secret(password.value)
            checks.append(Check(name, Check.OK, f"the admin user {result.username} has "
                                                f"{len(result.passwords or [])} passwords (not shown)"))
        return login_server
    name = f"registry {registry}: manage tokens"
    tokens, failure, message = _attempt(lambda: provider.retrier.call(
        lambda: list(client.tokens.list(ref.resource_group, ref.acr)), what=f"{what} tokens", write=False))
    if tokens is None:
        checks.append(_failed(name, failure, message, TOKEN_ROLE, "list the registry's tokens"))
        return login_server
    maps, failure, message = _attempt(lambda: provider.retrier.call(
        lambda: list(client.scope_maps.list(ref.resource_group, ref.acr)), what=f"{what} scope maps", write=False))
    if maps is None:
        checks.append(_failed(name, failure, message, TOKEN_ROLE, "list the registry's scope maps"))
        return login_server
    prefix = token_prefix(provider.name, registry)
    ours = sorted(str(t.name) for t in tokens if token_version(prefix, str(t.name)) is not None)
    checks.append(Check(name, Check.OK, f"{len(tokens)} tokens and {len(maps)} scope maps listed, "
                                        f"{len(ours)} tokens of this environment"
                                        f"{' (' + ', '.join(ours) + ')' if ours else ''}; creating them needs "
                                        "write access too, which only an apply shows"))
    return login_server


def _workspace(provider: AzureProvider, checks: list[Check], signed_in: bool) -> None:
    name = f"Azure ML workspace {provider.workspace_name}: register models"
    if not signed_in:
        checks.append(Check(name, Check.FAIL, "not checked: no Azure credential", "fix the Azure credential first"))
        return
    models, failure, message = _attempt(provider.models.list_owned)
    if models is None:
        checks.append(_failed(name, failure, message, MODEL_ROLE, "read the workspace's models"))
        return
    checks.append(Check(name, Check.OK, f"{len(models)} model versions of environment {provider.name} listed; "
                                        "registering needs write access too, which only an apply shows"))
    server, failure, message = _attempt(lambda: provider.connection.registry)
    if server is None:
        checks.append(_failed("Azure ML: image registry", failure, message, REGISTRY_READ_ROLE,
                              "read the workspace's registry"))
    else:
        checks.append(Check("Azure ML: image registry", Check.OK, f"images are built into {server}"))


AML_V2_API_VERSION = "2023-08-01-preview"  # azure-ai-ml 1.35's for model containers and versions (its client's)


def _api_versions(checks: list[Check], ml_sdk: str) -> None:
    from azure.iot.hub.protocol.version import VERSION as IOTHUB_API_VERSION
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    acr_api = str(getattr(ContainerRegistryManagementClient, "DEFAULT_API_VERSION", "the SDK's default"))
    lines = [
        ("IoT Hub data plane", IOTHUB_API_VERSION, "azure-iot-hub"),
        ("IoT Hub resource (SKU)", IOTHUB_ARM_API_VERSION, "edge-reconciler doctor"),
        ("ACR management", acr_api, "azure-mgmt-containerregistry"),
        ("ACR data plane", ACR_DATA_PLANE_API_VERSION, "azure-containerregistry"),
        ("Azure ML model management", MMS_ROUTE, "azureml-core") if ml_sdk == "v1"
        else ("Azure ML models (SDK v2)", AML_V2_API_VERSION, "azure-ai-ml"),
    ]
    for service, version, package in lines:
        source = package if package.startswith("edge-") else f"{package} {_version(package)}"
        checks.append(Check(f"api-version: {service}", Check.INFO, f"{version} ({source})"))


# --------------------------------------------------------------------------------------------------------------
# the write probe
# --------------------------------------------------------------------------------------------------------------


def _probe_content(login_server: str, password: str) -> dict[str, Any]:
    return {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"registryCredentials": {
                PROBE_REGISTRY: {"address": login_server, "username": "doctor-probe", "password": password}}}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5",
                                                             "createOptions": "{}"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}},
            },
            "modules": {},
        }},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {},
                                            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    }


def _password_in(cfg: Any) -> Any:
    agent = (modules_content(cfg) or {}).get("$edgeAgent") or {}
    desired = agent.get("properties.desired") if isinstance(agent, dict) else None
    try:
        return desired["runtime"]["settings"]["registryCredentials"][PROBE_REGISTRY].get("password")  # type: ignore[index]
    except (KeyError, TypeError, AttributeError):
        return None


def _probe(provider: AzureProvider, checks: list[Check], login_server: str | None) -> None:
    from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics

    hub: IoTHub = provider.hub
    probe_id = PROBE_PREFIX + secrets.token_hex(4)
    password = secrets.token_urlsafe(24)  # a dummy, but treated as a secret all the same
    errors.register_secret(password)
    metric_query = f"SELECT deviceId FROM devices WHERE deviceId = '{PROBE_DEVICE}'"
    cfg = Configuration(id=probe_id, schema_version="1.0", labels={"created-by": PROBE_LABEL},
                        content=ConfigurationContent(modules_content=_probe_content(
                            login_server or "doctorprobe.azurecr.io", password)),
                        target_condition=f"deviceId='{PROBE_DEVICE}'", priority=0,
                        metrics=ConfigurationMetrics(queries={"probe": metric_query}))
    name = f"write probe: create {probe_id}"
    _, failure, message = _attempt(lambda: hub.call(lambda: hub.configurations.create_configuration(cfg),
                                                    what=f"deployment {probe_id}", write=True, paced=True))
    created = failure is None and not message
    try:
        if not created:
            checks.append(_failed(name, failure, message, IOTHUB_ROLE, "create configurations"))
            return
        checks.append(Check(name, Check.OK, "a deployment that targets no device, with a dummy registry credential"))
        _probe_readback(hub, probe_id, password, checks)
    finally:
        if created or (failure is not None and failure.status is None):  # created, or maybe (no answer)
            _probe_delete(hub, probe_id, checks)


def _probe_readback(hub: IoTHub, probe_id: str, password: str, checks: list[Check]) -> None:
    read, failure, message = _attempt(lambda: hub.get_configuration(probe_id))
    if read is None:
        checks.append(_failed("write probe: read back", failure, message or "the deployment is not found",
                              IOTHUB_ROLE, "read configurations"))
        return
    listed, failure, message = _attempt(hub.list_configurations)
    in_listing = next((c for c in listed or [] if c.id == probe_id), None)
    seen = {"GET /configurations/{id}": _password_in(read)}
    if in_listing is not None:
        seen["GET /configurations"] = _password_in(in_listing)
    readable = [where for where, value in seen.items() if value == password]
    hidden = {where: value for where, value in seen.items() if value != password}
    # A fact, not a requirement: token passwords come from the hub's password store (a device twin), never
    # from the deployments' content, so the scoped-token design works either way (docs/azure.md).
    if not hidden:
        checks.append(Check("write probe: registry passwords read back", Check.INFO,
                            f"readable in {' and '.join(readable)}; not needed: token passwords are kept in the "
                            "hub's password store"))
    else:
        shapes = ", ".join(f"{where}: {_shape(value)}" for where, value in hidden.items())
        checks.append(Check("write probe: registry passwords read back", Check.INFO,
                            f"the hub does not return them as written ({shapes}); not needed: token passwords "
                            "are kept in the hub's password store"))
    system = dict(getattr(getattr(read, "system_metrics", None), "results", None) or {})
    custom = dict(getattr(getattr(read, "metrics", None), "results", None) or {})
    figures = ", ".join(f"{k}={v}" for k, v in sorted(system.items())) or "empty (not evaluated yet)"
    checks.append(Check("write probe: metrics right after creation", Check.INFO,
                        f"systemMetrics.results: {figures}; custom metric 'probe': "
                        f"{custom.get('probe', 'no result yet')}. The hub evaluates deployments up to about 5 "
                        "minutes after a change: until then health and drift cannot trust these figures"))


def _shape(value: Any) -> str:
    """How a password came back, without showing it."""
    if value is None:
        return "left out"
    if isinstance(value, str) and not value:
        return "empty"
    if isinstance(value, str) and set(value) <= set("*•xX"):
        return f"masked as {value[:8]!r}"
    return "changed"


def _probe_delete(hub: IoTHub, probe_id: str, checks: list[Check]) -> None:
    name = f"write probe: delete {probe_id}"

    def delete() -> None:
        try:
            hub.configurations.protocol.configuration.delete(probe_id, if_match="*")
        except Exception as exc:
            if errors.describe(exc).status == 404:
                return
            raise

    _, failure, message = _attempt(lambda: hub.call(delete, what=f"deployment {probe_id}", write=True, paced=True,
                                                    repeatable=True))
    if failure is None and not message:
        checks.append(Check(name, Check.OK, "deleted"))
        return
    failed = _failed(name, failure, message, IOTHUB_ROLE, "delete configurations")
    by_hand = (f"delete it by hand: az iot edge deployment delete --hub-name {hub.access.host.split('.')[0]} "
               f"--deployment-id {probe_id}")
    checks.append(Check(name, Check.FAIL, failed.detail, f"{failed.fix}; {by_hand}" if failed.fix else by_hand))
