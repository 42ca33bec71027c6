"""The contract checker itself: what it refuses, with which message, and what it lets through."""

from __future__ import annotations

from typing import Any

import pytest

from .contract import ContractChecker
from .framework import Request, Response

HUB = "emuhub.azure-devices.net"
ARM = "management.azure.com"
REG = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/emuacr")
MMS = ("/modelmanagement/v1.0/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
       "/workspaces/ws")


def request(method: str, host: str, path: str, api_version: str | None = None) -> Request:
    query = {"api-version": [api_version]} if api_version else {}
    return Request(method, host, path, query, {}, b"")


def config(**overrides: Any) -> dict[str, Any]:
    body = {"id": "c1", "schemaVersion": "1.0", "labels": {"a": "b"}, "content": {"modulesContent": {}},
            "targetCondition": "tags.env='prod'", "priority": 10, "etag": "MQ==",
            "systemMetrics": {"queries": {}, "results": {"appliedCount": 1}}}
    return {**body, **overrides}


@pytest.fixture(scope="module")
def checker() -> ContractChecker:
    return ContractChecker()


def test_a_conforming_iothub_configuration_passes(checker: ContractChecker) -> None:
    req = request("GET", HUB, "/configurations/c1", "2021-04-12")
    assert checker.check(req, Response(200, config())) is None
    assert checker.checked["IoT Hub Configuration_Get 200"] >= 1


def test_a_wrong_type_names_operation_status_and_first_error(checker: ContractChecker) -> None:
    req = request("GET", HUB, "/configurations/c1", "2021-04-12")
    problem = checker.check(req, Response(200, config(priority="10")))
    assert problem == ("Configuration_Get (GET emuhub.azure-devices.net/configurations/c1) answered 200: "
                       "priority: '10' is not of type 'integer', 'null'")


def test_an_undeclared_success_status_is_refused(checker: ContractChecker) -> None:
    # azure-iot-hub 2.7 raises on a 200 here: service.json declares only 204.
    req = request("POST", HUB, "/devices/d1/applyConfigurationContent", "2021-04-12")
    problem = checker.check(req, Response(200, {}))
    assert problem is not None and problem.endswith("status 200 is not declared (declared: 204)")


def test_iothub_errors_are_accepted_as_service_json_declares_none(checker: ContractChecker) -> None:
    req = request("PUT", HUB, "/configurations/c1", "2021-04-12")
    assert checker.check(req, Response(409, {"Message": "ErrorCode:Conflict;x"})) is None


def test_the_query_must_say_its_item_type(checker: ContractChecker) -> None:
    req = request("POST", HUB, "/devices/query", "2021-04-12")
    assert checker.check(req, Response(200, [], {"x-ms-item-type": "twin"})) is None
    problem = checker.check(req, Response(200, []))
    assert problem is not None and problem.endswith("required header x-ms-item-type is missing")


def test_a_long_running_create_needs_its_polling_header(checker: ContractChecker) -> None:
    req = request("PUT", ARM, REG + "/tokens/pull-1", "2025-04-01")
    token = {"id": REG + "/tokens/pull-1", "name": "pull-1", "properties": {"status": "enabled"}}
    assert checker.check(req, Response(201, token, {"Azure-AsyncOperation": "https://x"})) is None
    problem = checker.check(req, Response(201, token))
    assert problem is not None and problem.startswith("Tokens_Create (PUT management.azure.com/subscriptions/")
    assert problem.endswith("answered 201: required header Azure-AsyncOperation is missing")


def test_arm_errors_use_the_common_error_response(checker: ContractChecker) -> None:
    req = request("GET", ARM, REG, "2025-04-01")  # Registries_Get declares no default response
    assert checker.check(req, Response(404, {"error": {"code": "ResourceNotFound", "message": "x"}})) is None
    problem = checker.check(req, Response(404, {"error": {"code": 404}}))
    assert problem is not None and problem.endswith("error/code: 404 is not of type 'string', 'null'")


def test_a_missing_required_property_is_refused(checker: ContractChecker) -> None:
    req = request("GET", ARM, REG, "2025-04-01")
    problem = checker.check(req, Response(200, {"location": "westeurope", "properties": {}}))
    assert problem is not None and problem.endswith("(body): 'sku' is a required property")


def test_nulls_pass_for_optional_properties(checker: ContractChecker) -> None:
    req = request("GET", "westeurope.modelmanagement.azureml.net", MMS + "/models/m:1")
    model = {"id": "m:1", "name": "m", "version": 1, "url": "aml://asset/x", "mimeType": "application/json",
             "runId": None, "frameworkVersion": None, "kvTags": {"k": "v"}}
    assert checker.check(req, Response(200, model)) is None
    problem = checker.check(req, Response(200, {**model, "kvTags": {"k": 1}}))
    assert problem is not None and problem.endswith("kvTags/k: 1 is not of type 'string', 'null'")


def test_the_acr_challenge_detail_array_is_allowed(checker: ContractChecker) -> None:
    req = request("GET", "emuacr.azurecr.io", "/acr/v1/models/demo/_tags")
    challenge = {"errors": [{"code": "UNAUTHORIZED", "message": "x",
                             "detail": [{"Type": "repository", "Name": "models/demo", "Action": "pull"}]}]}
    assert checker.check(req, Response(401, challenge)) is None
    problem = checker.check(req, Response(403, challenge))  # the allowance is for the 401 challenge only
    assert problem is not None and problem.endswith("errors/0/detail: [{'Type': 'repository', 'Name': "
                                                    "'models/demo', 'Action': 'pull'}] is not of type 'object', 'null'")


def test_other_api_versions_and_routes_are_counted_not_validated(checker: ContractChecker) -> None:
    assert checker.check(request("GET", ARM, REG, "2019-05-01"), Response(200, {})) is None
    assert checker.check(request("GET", "login.microsoftonline.com", "/x/v2.0/.well-known"), Response(200, {})) is None
    assert checker.unvalidated["ACR management: api-version 2019-05-01 (vendored: 2025-04-01)"] >= 1
    assert checker.unvalidated["login.microsoftonline.com: no vendored definition"] >= 1


AML_WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def test_sdk_v2_model_versions_are_checked_against_the_2023_08_01_preview_definition(checker: ContractChecker) -> None:
    req = request("PUT", ARM, AML_WS + "/models/m/versions/1", "2023-08-01-preview")
    version = {"id": AML_WS + "/models/m/versions/1", "name": "1", "type": "x",
               "properties": {"description": None, "tags": {"a": "b"}, "properties": {}, "isArchived": False,
                              "isAnonymous": False, "modelType": "custom_model", "modelUri": "azureml://x",
                              "flavors": {}, "jobName": None, "provisioningState": "Succeeded",
                              "stage": "Development"}}
    assert checker.check(req, Response(201, version)) is None
    assert checker.checked["Azure ML models (v2) ModelVersions_CreateOrUpdate 201"] >= 1
    broken = {**version, "properties": {**version["properties"], "isArchived": "no"}}
    problem = checker.check(req, Response(200, broken))
    assert problem is not None and "ModelVersions_CreateOrUpdate" in problem and "isArchived" in problem
    assert checker.check(request("GET", ARM, AML_WS + "/models", "2023-08-01-preview"),
                         Response(200, {"value": [{"name": "m", "properties": {"tags": None, "latestVersion": "1",
                                                                                "provisioningState": "Bogus"}}]}))


WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
DATASTORES_API = "2024-10-01-preview"


def datastore(**credentials: Any) -> dict[str, Any]:
    """A ``DatastoreResource`` as examples/Datastore/get.json (2024-10-01-preview) shows it: an AzureBlob datastore
    with account-key credentials, their secrets reduced to the type."""
    return {"id": f"{WS}/datastores/workspaceblobstore", "name": "workspaceblobstore", "type": "datastores",
            "properties": {"datastoreType": "AzureBlob", "isDefault": True, "accountName": "acct",
                           "containerName": "azureml-blobstore", "endpoint": "core.windows.net", "protocol": "https",
                           "credentials": credentials or {"credentialsType": "AccountKey",
                                                          "secrets": {"secretsType": "AccountKey"}}}}


def test_a_datastore_is_checked_as_the_definition_its_discriminator_names(checker: ContractChecker) -> None:
    req = request("GET", ARM, f"{WS}/datastores/workspaceblobstore", DATASTORES_API)
    assert checker.check(req, Response(200, datastore())) is None
    assert checker.checked["Azure ML datastores (v2) Datastores_Get 200"] >= 1
    # AzureBlobDatastore.containerName is a string: checked only because datastoreType says AzureBlob.
    wrong = datastore()
    wrong["properties"]["containerName"] = 7
    problem = checker.check(req, Response(200, wrong))
    assert problem is not None and "Datastores_Get" in problem
    # AccountKeyDatastoreCredentials requires its secrets (examples/Datastore/get.json sends their type).
    problem = checker.check(req, Response(200, datastore(credentialsType="AccountKey")))
    assert problem is not None and "answered 200: properties/credentials" in problem


def test_datastore_secrets_are_checked_by_their_type(checker: ContractChecker) -> None:
    req = request("POST", ARM, f"{WS}/datastores/workspaceblobstore/listSecrets", DATASTORES_API)
    assert checker.check(req, Response(200, {"secretsType": "Sas", "sasToken": "sv=x&sig=y"})) is None
    problem = checker.check(req, Response(200, {"secretsType": "Sas", "sasToken": ["not", "a", "string"]}))
    assert problem is not None and "Datastores_ListSecrets" in problem
    assert checker.check(req, Response(200, {"secretsType": "Nope"})) is not None  # not a SecretsType
