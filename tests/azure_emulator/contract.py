"""The emulator's contract: every answer it gives is checked against the published REST definition
of the operation it answers (``specs/``, see ``specs/README.md``).

For each response the checker finds the operation (service by host and path, then method and path
template), and checks:

* the **status** is one the operation declares (an error status may fall under ``default``);
* the **body** validates against the declared schema (swagger 2.0 ``definitions``, ``$ref``\\ s
  resolved across files, compiled once per schema);
* the **headers** a long-running operation's 201/202 declares (``Azure-AsyncOperation``,
  ``Location``) are present, and so are the paging headers the definition names as required.

Swagger is not JSON Schema; these readings are applied to every definition and said here once:

* A property may be ``null`` unless it says ``x-nullable: false``. Azure services send nulls for
  unset optional properties (MMS: ``"runId": null``) and every AutoRest client accepts them.
* ``type: file`` (binary bodies) is not checked.
* ``additionalProperties: false`` is not enforced. Azure ML's definitions close every object, bases of an
  ``allOf`` chain included; draft 4 would apply a base's closure to the derived object alone and refuse
  every property the derived definition adds, which no AutoRest client does.
* A ``discriminator`` picks the derived definition by the discriminator's value (``_polymorphic``): Azure ML's
  datastores are ``Datastore`` by ``datastoreType``, their credentials and secrets by ``credentialsType`` and
  ``secretsType``.

Known-wrong published definitions are in ``ALLOWED`` below, each with its reason. A response that
matches no vendored operation is counted as *unvalidated*, by service, and listed in the summary.

This module must not import ``reconciler``: it describes Azure, not the product.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from .framework import Request, Response

SPECS = Path(__file__).resolve().parent / "specs"
BASE_URI = "https://specs.invalid/"

IOTHUB_DOC = "iothub/2021-04-12/service.json"
ACR_ARM_DOC = ("containerregistry/resource-manager/Microsoft.ContainerRegistry/Registry/stable/2025-04-01/"
               "containerregistry.json")
ACR_TASKS_DOC = ("containerregistry/resource-manager/Microsoft.ContainerRegistry/preview/2019-06-01-preview/"
                 "containerregistry_build.json")
ACR_TASKS_API_VERSION = "2019-06-01-preview"
ACR_DATA_DOC = "containerregistry/data-plane/Azure.ContainerRegistry/stable/2021-07-01/containerregistry.json"
MMS_DOC = "machinelearningservices/data-plane/Microsoft.MachineLearningServices/preview/2019-09-30/modelManagement.json"
COMMON_TYPES_DOC = "common-types/resource-management/v6/types.json"
COMMON_TYPES_V3_DOC = "common-types/resource-management/v3/types.json"  # what Azure ML's mfe.json refers to
AML_V2_DOC = ("machinelearningservices/resource-manager/Microsoft.MachineLearningServices/preview/2023-08-01-preview/"
              "mfe.json")
AML_V2_API_VERSION = "2023-08-01-preview"  # azure-ai-ml 1.35's, for model containers and versions
AML_V2_DATASTORES_DOC = ("machinelearningservices/resource-manager/Microsoft.MachineLearningServices/preview/"
                         "2024-10-01-preview/mfe.json")
AML_V2_DATASTORES_API_VERSION = "2024-10-01-preview"  # azure-ai-ml 1.35's, for datastores
ARM_ERROR_REF = COMMON_TYPES_DOC + "#/definitions/ErrorResponse"


# --------------------------------------------------------------------------- IoT Hub's definition

#: The IoT Hub operations the product and the emulator use, as service.json (api-version 2021-04-12,
#: Azure/azure-iot-hub-python@5f2f1ba) declares them: operationId, declared statuses and the model each
#: returns. service.json is not vendored (see specs/README.md); its models are read from the client
#: AutoRest generated from it, azure-iot-hub 2.7's ``azure.iot.hub.protocol.models``.
IOTHUB_OPERATIONS: tuple[tuple[str, str, str, dict[str, str | None]], ...] = (
    ("get", "/configurations/{id}", "Configuration_Get", {"200": "Configuration"}),
    ("put", "/configurations/{id}", "Configuration_CreateOrUpdate", {"200": "Configuration", "201": "Configuration"}),
    ("delete", "/configurations/{id}", "Configuration_Delete", {"204": None}),
    ("get", "/configurations", "Configuration_GetConfigurations", {"200": "[Configuration]"}),
    ("post", "/configurations/testQueries", "Configuration_TestQueries", {"200": "ConfigurationQueriesTestResponse"}),
    ("post", "/devices/{id}/applyConfigurationContent", "Configuration_ApplyOnEdgeDevice", {"204": None}),
    ("get", "/devices", "Devices_GetDevices", {"200": "[Device]"}),
    ("post", "/devices/query", "Query_GetTwins", {"200": "[Twin]"}),
    ("get", "/devices/{id}", "Devices_GetIdentity", {"200": "Device"}),
    ("put", "/devices/{id}", "Devices_CreateOrUpdateIdentity", {"200": "Device"}),
    ("delete", "/devices/{id}", "Devices_DeleteIdentity", {"204": None}),
    ("get", "/twins/{id}", "Devices_GetTwin", {"200": "Twin"}),
    ("put", "/twins/{id}", "Devices_ReplaceTwin", {"200": "Twin"}),
    ("patch", "/twins/{id}", "Devices_UpdateTwin", {"200": "Twin"}),
    ("get", "/twins/{id}/modules/{mid}", "Modules_GetTwin", {"200": "Twin"}),
    ("put", "/twins/{id}/modules/{mid}", "Modules_ReplaceTwin", {"200": "Twin"}),
    ("patch", "/twins/{id}/modules/{mid}", "Modules_UpdateTwin", {"200": "Twin"}),
)

#: Query_GetTwins declares the response headers ``x-ms-item-type`` and ``x-ms-continuation``; the SDK's
#: ``query_iot_hub`` reads ``x-ms-item-type`` from every page, so it is required. The continuation is
#: present only while more pages remain.
IOTHUB_QUERY_HEADERS = {"x-ms-item-type": {"type": "string"}, "x-ms-continuation": {"type": "string"}}


def _msrest_type(name: str) -> dict[str, Any]:
    if name.startswith("{") and name.endswith("}"):
        return {"type": "object", "additionalProperties": _msrest_type(name[1:-1])}
    if name.startswith("[") and name.endswith("]"):
        return {"type": "array", "items": _msrest_type(name[1:-1])}
    scalar = {"str": "string", "int": "integer", "long": "integer", "float": "number", "bool": "boolean",
              "iso-8601": "string", "rfc-1123": "string", "date": "string", "duration": "string",
              "bytearray": "string"}
    if name in scalar:
        return {"type": scalar[name]}
    if name == "object":
        return {}
    return {"$ref": f"#/definitions/{name}"}


def iothub_document() -> dict[str, Any]:
    """A swagger-2.0-shaped document of the IoT Hub operations above, with the models of the client that
    was generated from service.json."""
    from azure.iot.hub.protocol import models
    from msrest.serialization import Model

    definitions: dict[str, Any] = {}
    for name in dir(models):
        cls = getattr(models, name)
        if not (isinstance(cls, type) and issubclass(cls, Model) and cls is not Model):
            continue
        attributes = cls._attribute_map
        required = [attributes[a]["key"] for a, rule in getattr(cls, "_validation", {}).items() if rule.get("required")]
        properties = {spec["key"]: _msrest_type(spec["type"]) for spec in attributes.values()}
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        definitions[name] = schema
    paths: dict[str, dict[str, Any]] = {}
    for method, path, operation_id, responses in IOTHUB_OPERATIONS:
        declared: dict[str, Any] = {}
        for status, model in responses.items():
            declared[status] = {} if model is None else {"schema": _msrest_type(model)}
        if operation_id == "Query_GetTwins":
            declared["200"]["headers"] = dict(IOTHUB_QUERY_HEADERS)
        paths.setdefault(path, {})[method] = {"operationId": operation_id, "responses": declared}
    return {"swagger": "2.0", "info": {"title": "IotHub Gateway Service APIs", "version": "2021-04-12"},
            "paths": paths, "definitions": definitions}


# --------------------------------------------------------------------------- loading and compiling


def _swagger_to_draft4(document: dict[str, Any]) -> dict[str, Any]:
    """The readings in the module docstring, applied in place to every schema of a document."""
    _polymorphic(document)
    for schema in document.get("definitions", {}).values():
        _schema(schema)
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for response in operation.get("responses", {}).values() if isinstance(operation, dict) else ():
                if "schema" in response:
                    _schema(response["schema"])
    return document


def _polymorphic(document: dict[str, Any]) -> None:
    """Swagger 2.0's ``discriminator``: a definition with ``discriminator: F`` stands for every definition that
    extends it (an ``allOf`` ``$ref`` to it) with ``x-ms-discriminator-value: V`` (by default its own name), and an
    instance whose ``F`` is ``V`` is one of those (swagger 2.0 "Composition and Inheritance (Polymorphism)";
    AutoRest's ``x-ms-discriminator-value``). Draft 4 has no discriminator, so the base keeps its own schema as
    ``<Base>.base`` (which the extensions' ``allOf`` now name, so that no ``$ref`` cycle is formed), and the base
    becomes that schema plus, per extension, ``anyOf: [F is not V, the extension]``. A value with no vendored
    extension is checked against the base alone."""
    definitions = document.get("definitions", {})
    for name, base in list(definitions.items()):
        field = base.get("discriminator")
        if not isinstance(field, str):
            continue
        own, ref = f"{name}.base", f"#/definitions/{name}"
        extensions = []
        for other, schema in definitions.items():
            for part in schema.get("allOf", []):
                if part.get("$ref") == ref:
                    part["$ref"] = f"#/definitions/{own}"
                    extensions.append((schema.get("x-ms-discriminator-value", other), other))
        definitions[own] = base
        definitions[name] = {"allOf": [{"$ref": f"#/definitions/{own}"}, *(
            {"anyOf": [{"properties": {field: {"not": {"enum": [value]}}}}, {"$ref": f"#/definitions/{other}"}]}
            for value, other in extensions)]}


def _schema(node: dict[str, Any]) -> dict[str, Any]:
    if node.get("type") == "file":
        node.pop("type")
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    for name, sub in list(node.get("properties", {}).items()):
        node["properties"][name] = _nullable(_schema(sub))
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _nullable(_schema(node["additionalProperties"]))
    if isinstance(node.get("items"), dict):
        _schema(node["items"])
    for sub in node.get("allOf", []):
        _schema(sub)
    return node


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("x-nullable") is False:
        return schema
    if "$ref" in schema:  # draft 4 ignores siblings of $ref
        return {"anyOf": [{"type": "null"}, schema]}
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


@dataclass(frozen=True)
class Operation:
    service: str
    operation_id: str
    method: str
    pattern: re.Pattern[str]
    specificity: int  # literal characters in the template: the most specific template wins
    document: str
    pointer: str  # JSON pointer of the operation inside the document
    responses: dict[str, Any]
    long_running: bool


@dataclass(frozen=True)
class Service:
    """One vendored definition and the traffic it describes."""

    name: str
    document: str
    matches: Callable[[Request], bool]
    api_version: str | None = None  # the request's api-version must be this one to be validated
    ignore_case: bool = False
    wide_params: frozenset[str] = frozenset()  # path parameters that may contain "/"


def _acr_data_plane(request: Request) -> bool:
    return request.host not in ("management.azure.com", "login.microsoftonline.com") and (
        request.path.startswith(("/acr/v1/", "/oauth2/exchange", "/oauth2/token", "/v2/")) or request.path == "/v2")


def _acr_arm(request: Request) -> bool:
    return request.host == "management.azure.com" and "/providers/microsoft.containerregistry/" in request.path.lower()


SERVICES = (
    Service("IoT Hub", IOTHUB_DOC, lambda r: r.host.endswith(".azure-devices.net"), api_version="2021-04-12"),
    # ACR Tasks (scheduleRun, runs, the source upload URL) at the api-version the product's builder sends: its
    # own document (containerregistry_build.json), matched before the registry's 2025-04-01 one.
    Service("ACR Tasks", ACR_TASKS_DOC, lambda r: _acr_arm(r) and r.q("api-version") == ACR_TASKS_API_VERSION,
            api_version=ACR_TASKS_API_VERSION, ignore_case=True),
    Service("ACR management", ACR_ARM_DOC, _acr_arm, api_version="2025-04-01", ignore_case=True),
    Service("ACR data plane", ACR_DATA_DOC, _acr_data_plane, wide_params=frozenset({"name"})),
    Service("Azure ML model management", MMS_DOC, lambda r: r.path.startswith("/modelmanagement/v1.0/")),
    # SDK v2's model containers and versions: ARM resources under the workspace (aml_v2.py).
    Service("Azure ML models (v2)", AML_V2_DOC,
            lambda r: r.host == "management.azure.com" and "/workspaces/" in r.path.lower()
            and "/models" in r.path.lower(), api_version=AML_V2_API_VERSION, ignore_case=True),
    # SDK v2's default datastore (its blob container and a SAS for it): ARM resources under the workspace too.
    Service("Azure ML datastores (v2)", AML_V2_DATASTORES_DOC,
            lambda r: r.host == "management.azure.com" and "/workspaces/" in r.path.lower()
            and "/datastores" in r.path.lower(), api_version=AML_V2_DATASTORES_API_VERSION, ignore_case=True),
)


def _template_regex(template: str, wide: frozenset[str], ignore_case: bool) -> tuple[re.Pattern[str], int]:
    parts = re.split(r"\{(\w+)\}", template.rstrip("/"))
    regex = "".join(re.escape(part) if i % 2 == 0 else ("(.+?)" if part in wide else "([^/]+)")
                    for i, part in enumerate(parts))
    literal = sum(len(part) for i, part in enumerate(parts) if i % 2 == 0)
    return re.compile(regex + "/?", re.IGNORECASE if ignore_case else 0), literal


#: Operations of the published ACR management definition (2025-04-01, azure-rest-api-specs@2cba9e8, see
#: specs/README.md) that the trimmed file under specs/ does not carry, declared here from it: path, method,
#: operationId, the declared statuses with their headers, and the long-running-operation extension.
#: ``Registries_ImportImage`` declares 200 (no body) and 202 with a ``Location`` header, no ``default`` (its
#: errors are checked against the ARM common ErrorResponse, as for ARM_ERRORS_WITHOUT_DEFAULT), and
#: ``x-ms-long-running-operation`` with ``final-state-via: location``.
ACR_ARM_ADDED_OPERATIONS: dict[str, dict[str, Any]] = {
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/"
    "registries/{registryName}/importImage": {
        "post": {
            "operationId": "Registries_ImportImage",
            "responses": {"200": {}, "202": {"headers": {"Location": {"type": "string"}}}},
            "x-ms-long-running-operation": True,
            "x-ms-long-running-operation-options": {"final-state-via": "location"},
        },
    },
}


def _load(path: str) -> dict[str, Any]:
    if path == IOTHUB_DOC:
        return iothub_document()
    with open(SPECS / path, encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    if path == ACR_ARM_DOC:
        for template, item in ACR_ARM_ADDED_OPERATIONS.items():
            assert template not in document["paths"], f"{template} is vendored now: drop it from the additions"
            document["paths"][template] = copy.deepcopy(item)
    return document


# --------------------------------------------------------------------------- allowed deviations


@dataclass(frozen=True)
class Allowance:
    """A deviation from the published definition that the real service is known to make."""

    service: str
    reason: str
    statuses: Callable[[int], bool]
    operation: str | None = None  # None: every operation of the service
    error: Callable[[ValidationError], bool] | None = None  # None: the status needs no declaration


ALLOWED: tuple[Allowance, ...] = (
    # service.json declares no error response for any operation (AutoRest raises HttpOperationError for
    # every undeclared status); the hub's errors are {"Message", "ExceptionMessage"} plus the
    # iothub-errorcode header (issue 11, item 6), documented in the IoT Hub error-code reference instead.
    Allowance("IoT Hub", "service.json declares no error responses", lambda s: s >= 400),
    # The ACR token challenge says which scope is missing in `detail`, an ARRAY of {Type, Name, Action}
    # in reality (the shape `docker login` and azure-containerregistry read); AcrErrorInfo.detail is typed
    # `object` in the 2021-07-01 definition.
    Allowance("ACR data plane", "AcrErrorInfo.detail is an array in reality, an object in swagger",
              lambda s: s == 401,
              error=lambda e: list(e.absolute_path)[:1] == ["errors"] and list(e.absolute_path)[-1:] == ["detail"]),
)

#: ARM operations whose 2025-04-01 definition declares no ``default`` error response (Registries_Get,
#: _ListCredentials, _RegenerateCredential): every ARM error uses the common ErrorResponse (ARM RPC), so
#: their error statuses are checked against it rather than refused as undeclared.
ARM_ERRORS_WITHOUT_DEFAULT = "ACR management"


# --------------------------------------------------------------------------- the checker


@dataclass
class ContractChecker:
    """Checks responses; thread-safe (the emulator answers from many threads). Loads lazily."""

    violations: list[str] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)  # "Service OperationId status" -> count
    unvalidated: Counter[str] = field(default_factory=Counter)  # "Service: reason" -> count
    allowed: Counter[str] = field(default_factory=Counter)  # Allowance.reason -> responses it let through
    seconds: float = 0.0
    _operations: dict[str, list[Operation]] | None = None
    _validators: dict[str, Draft4Validator] = field(default_factory=dict)
    _registry: Registry | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- loading

    def _ensure_loaded(self) -> dict[str, list[Operation]]:
        if self._operations is not None:
            return self._operations
        documents = {path: _swagger_to_draft4(copy.deepcopy(_load(path)))
                     for path in {*(s.document for s in SERVICES), COMMON_TYPES_DOC, COMMON_TYPES_V3_DOC}}
        self._registry = Registry().with_resources(
            (BASE_URI + path, Resource(contents=doc, specification=DRAFT4)) for path, doc in documents.items())
        operations: dict[str, list[Operation]] = {}
        for service in SERVICES:
            found = []
            for template, item in documents[service.document]["paths"].items():
                for method, op in item.items():
                    if method == "parameters":
                        continue
                    pattern, literal = _template_regex(template, service.wide_params, service.ignore_case)
                    pointer = "/paths/" + template.replace("~", "~0").replace("/", "~1") + "/" + method
                    found.append(Operation(service.name, op["operationId"], method.upper(), pattern, literal,
                                           service.document, pointer, op["responses"],
                                           bool(op.get("x-ms-long-running-operation"))))
            operations[service.name] = sorted(found, key=lambda o: -o.specificity)
        self._operations = operations
        return operations

    def _validator(self, document: str, pointer: str) -> Draft4Validator:
        key = f"{document}#{pointer}"
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft4Validator({"$ref": BASE_URI + key}, registry=self._registry)
            self._validators[key] = validator
        return validator

    # -- checking

    def observe(self, request: Request, response: Response) -> None:
        """The emulator's hook: never raises (it runs in the server's threads)."""
        started = time.perf_counter()
        try:
            problem = self.check(request, response)
        except Exception as exc:  # a bug here must not break the emulator's answer
            problem = f"contract checker failed on {request.method} {request.host}{request.path}: {exc!r}"
        with self._lock:
            self.seconds += time.perf_counter() - started
            if problem:
                self.violations.append(problem)

    def find(self, request: Request) -> tuple[Service, Operation | None]:
        operations = self._ensure_loaded()
        for service in SERVICES:
            if not service.matches(request):
                continue
            for operation in operations[service.name]:
                if operation.method == request.method and operation.pattern.fullmatch(request.path):
                    return service, operation
            return service, None
        raise LookupError

    def check(self, request: Request, response: Response) -> str | None:
        """None when the response conforms (or is not covered), else the violation, in one line."""
        try:
            service, operation = self.find(request)
        except LookupError:
            self._count_unvalidated(f"{request.host}: no vendored definition")
            return None
        if operation is None:
            self._count_unvalidated(f"{service.name}: {request.method} {_shape(request.path)} is not in the definition")
            return None
        version = request.q("api-version")
        if service.api_version and version != service.api_version:
            self._count_unvalidated(f"{service.name}: api-version {version} (vendored: {service.api_version})")
            return None
        status = response.status
        with self._lock:
            self.checked[f"{service.name} {operation.operation_id} {status}"] += 1
        where = f"{operation.operation_id} ({request.method} {request.host}{request.path}) answered {status}"
        declared = operation.responses.get(str(status))
        pointer = f"{operation.pointer}/responses/{status}"
        document = operation.document
        if declared is None and status >= 400:
            declared = operation.responses.get("default")
            pointer = f"{operation.pointer}/responses/default"
            if declared is None and service.name == ARM_ERRORS_WITHOUT_DEFAULT:
                declared, document, pointer = {"schema": {}}, COMMON_TYPES_DOC, "/definitions/ErrorResponse"
        if declared is None:
            if self._allowed(service, operation, status, None):
                return None
            listed = ", ".join(sorted(operation.responses))
            return f"{where}: status {status} is not declared (declared: {listed})"
        missing = self._missing_headers(operation, status, declared, response.headers)
        if missing:
            return f"{where}: required header {missing} is missing"
        if "schema" not in declared or request.method == "HEAD":
            return None
        body, problem = _json_body(response)
        if problem:
            return f"{where}: {problem}"
        schema_pointer = f"{pointer}/schema" if document == operation.document else pointer
        errors = self._validator(document, schema_pointer).iter_errors(body)
        for err in sorted(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))):
            if self._allowed(service, operation, status, err):
                continue
            return f"{where}: {_describe(err)}"
        return None

    def _allowed(self, service: Service, operation: Operation, status: int, err: ValidationError | None) -> bool:
        for allowance in ALLOWED:
            if allowance.service != service.name or not allowance.statuses(status):
                continue
            if allowance.operation not in (None, operation.operation_id):
                continue
            if (err is None and allowance.error is None) or (
                    err is not None and allowance.error is not None and allowance.error(err)):
                with self._lock:
                    self.allowed[allowance.reason] += 1
                return True
        return False

    @staticmethod
    def _missing_headers(operation: Operation, status: int, declared: dict[str, Any],
                         headers: dict[str, str]) -> str | None:
        present = {name.lower() for name in headers}
        required: Iterable[str] = ()
        if operation.long_running and status in (201, 202):
            required = declared.get("headers", {})  # Azure-AsyncOperation (201) / Location (202)
        elif operation.operation_id == "Query_GetTwins" and status == 200:
            required = ("x-ms-item-type",)
        for name in required:
            if name.lower() not in present:
                return name
        return None

    def _count_unvalidated(self, reason: str) -> None:
        with self._lock:
            self.unvalidated[reason] += 1

    # -- reporting

    def summary(self) -> list[str]:
        operations = {key.rsplit(" ", 1)[0] for key in self.checked}
        lines = [f"{sum(self.checked.values())} emulator responses checked against {len(operations)} operations "
                 f"of the vendored REST definitions in {self.seconds:.2f} s; {len(self.violations)} violation(s)"]
        if self.allowed:
            lines.append("allow-listed deviations from the published definitions (contract.ALLOWED):")
            lines += [f"  {count:6d}  {reason}" for reason, count in sorted(self.allowed.items())]
        if self.unvalidated:
            lines.append(f"{sum(self.unvalidated.values())} responses not validated:")
            lines += [f"  {count:6d}  {reason}" for reason, count in sorted(self.unvalidated.items())]
        return lines


def _shape(path: str) -> str:
    """A path with its variable segments blurred, so the summary groups alike requests."""
    return re.sub(r"/[^/]*(?:[0-9a-f]{8,}|[:.@%])[^/]*", "/…", path)


def _json_body(response: Response) -> tuple[Any, str | None]:
    body = response.body
    if body is None:
        return None, "the body is empty, but the definition declares one"
    if isinstance(body, bytes):
        try:
            return json.loads(body or b"null"), None
        except ValueError:
            return None, "the body is not JSON, but the definition declares a JSON schema"
    return body, None


def _describe(err: ValidationError) -> str:
    # A $ref property is made nullable as anyOf [null, $ref]: report why the $ref branch failed.
    while err.validator == "anyOf" and err.context:
        branches = [e for e in err.context if e.schema != {"type": "null"}]
        if not branches:
            break
        err = best_match(branches)
    location = "/".join(str(p) for p in err.absolute_path) or "(body)"
    message = err.message if len(err.message) <= 200 else err.message[:200] + "…"
    return f"{location}: {message}"
