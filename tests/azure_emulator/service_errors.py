"""Error answers in each service's own shape, for injected faults (``server.FaultRule``).

Clients read errors differently per service, so a fault must look like what that service sends:

* **IoT Hub** (``*.azure-devices.net``): ``{"Message": "ErrorCode:<code>;<text>", "ExceptionMessage":
  "Tracking ID:..."}`` plus the ``iothub-errorcode`` header, and no ARM ``error`` object
  (``iothub.hub_error``). Only documented codes: MicrosoftDocs/azure-docs
  articles/iot-hub/troubleshoot-error-codes.md and the REST reference's "IoT Hub API common error codes"
  (400004 ArgumentInvalid, 401002 IotHubUnauthorizedAccess, 412001 PreconditionFailed, 429001
  ThrottlingException, 500001 ServerError, 503 ServiceUnavailable, 504101 GatewayTimeout).
* **ACR data plane** (``/oauth2/...``, ``/acr/v1/...``, ``/v2/...`` at a login server):
  ``{"errors": [{"code", "message", "detail"}]}`` (azure-rest-api-specs
  specification/containerregistry/data-plane/Azure.ContainerRegistry/stable/2021-07-01/containerregistry.json,
  ``AcrErrors``/``AcrErrorInfo``; codes from the distribution specification's error codes, ``UNKNOWN`` being
  docker/distribution's ``errcode.ErrorCodeUnknown``).
* **Azure ML model management** (``*.azureml.net``, ``*.azureml.ms``): ``ModelErrorResponse`` ``{"code",
  "statusCode", "message", "details"}`` (``aml.mms_error``).
* **ARM** (everything else, ``management.azure.com``): ``{"error": {"code", "message"}}`` (the ARM
  ``ErrorResponse`` of azure-rest-api-specs common-types). AAD is answered in this shape too: its OAuth
  ``{"error": "<code>", "error_description"}`` shape is not emulated for faults.
"""

from __future__ import annotations

import re
import uuid

from .framework import Request, Response, error
from .iothub import hub_error

ACR_PATH = re.compile(r"^/(oauth2/|acr/v1/|v2/)")

_HUB_CODES = {400: "ArgumentInvalid", 401: "IotHubUnauthorizedAccess", 412: "PreconditionFailed",
              429: "ThrottlingException", 500: "ServerError", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
_ACR_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN", 429: "TOOMANYREQUESTS"}
_ARM_CODES = {401: "InvalidAuthenticationToken", 403: "AuthorizationFailed", 404: "ResourceNotFound",
              429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
              504: "GatewayTimeout"}


def service_of(request: Request) -> str:
    host = request.host
    if host.endswith(".azure-devices.net"):
        return "iothub"
    if host.endswith((".azureml.net", ".azureml.ms")):
        return "aml"
    if host != "login.microsoftonline.com" and ACR_PATH.match(request.path):
        return "acr"
    return "arm"


def default_code(service: str, status: int) -> str:
    if service == "iothub":
        return _HUB_CODES.get(status, "ServerError" if status >= 500 else "ArgumentInvalid")
    if service == "acr":
        return _ACR_CODES.get(status, "UNKNOWN" if status >= 500 else "UNSUPPORTED")
    return _ARM_CODES.get(status, "InternalServerError" if status >= 500 else "BadRequest")


def service_error(request: Request, status: int, code: str | None, message: str, **headers: str) -> Response:
    """``status`` with ``code`` (or the service's usual code for it) as ``request``'s service answers it."""
    service = service_of(request)
    code = code or default_code(service, status)
    if service == "iothub":
        return hub_error(status, code, message, **headers)
    if service == "acr":
        return Response(status, {"errors": [{"code": code, "message": message, "detail": None}]}, headers)
    if service == "aml":
        request_id = str(uuid.uuid4())
        return Response(status, {"code": code, "statusCode": status, "message": message, "details": [],
                                 "correlation": {"RequestId": request_id}}, {"x-ms-request-id": request_id, **headers})
    return error(status, code, message, **headers)
