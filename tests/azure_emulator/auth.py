"""Test-side credentials for the emulator (the product uses azure-identity / azureml's own auth classes).

* ``StaticTokenAuthentication``: an azureml ``AbstractAuthentication`` that hands out a static, unsigned JWT
  with ``exp`` (azureml decodes it to schedule refreshes) and knows its subscriptions, so no AAD or
  ``GET /subscriptions`` call is made.
* ``StaticTokenCredential``: the azure-core ``TokenCredential`` equivalent for azure-mgmt-* and
  azure-containerregistry clients.

Importing this module imports azureml; import it only after ``HOME`` (and any other variable azureml reads at
import time) is set.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken
from azureml.core.authentication import AbstractAuthentication, _SubscriptionInfo

from .arm import DEFAULT_TENANT, access_token


class StaticTokenAuthentication(AbstractAuthentication):  # type: ignore[misc]
    """azureml auth that never talks to AAD: every token is one unsigned JWT valid for an hour."""

    def __init__(self, subscription_ids: list[str], tenant_id: str = DEFAULT_TENANT, cloud: str = "AzureCloud") -> None:
        super().__init__(cloud)  # a known cloud name: no GET /metadata/endpoints
        self._subscription_ids = list(subscription_ids)
        self._tenant_id = tenant_id
        self._token = access_token("https://management.azure.com", tenant_id, "emulator-tests")

    def _get_arm_token(self) -> str:
        return self._token

    def _get_graph_token(self) -> str:
        return self._token

    def _get_azureml_client_token(self) -> str:
        return self._token

    def _get_all_subscription_ids(self) -> tuple[list[Any], str]:
        return [_SubscriptionInfo("emulated", s) for s in self._subscription_ids], self._tenant_id

    def _get_workspace(self, subscription_id: str, resource_group: str, name: str) -> None:
        return None


class StaticTokenCredential:
    """A ``TokenCredential`` whose tokens name the requested scope as audience."""

    def __init__(self, tenant_id: str = DEFAULT_TENANT) -> None:
        self._tenant_id = tenant_id
        self.scopes_requested: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_requested.extend(scopes)
        audience = (scopes[0] if scopes else "https://management.azure.com/.default").removesuffix("/.default")
        return AccessToken(access_token(audience, self._tenant_id, "emulator-tests"), int(time.time()) + 3600)
