"""One ACR data-plane access token per registry and run, for every repository the run reads.

azure-containerregistry 1.2 authenticates each call by itself: the call is sent without a token, answered
401 with a challenge, then it exchanges the AAD token for an ACR refresh token (``POST /oauth2/exchange``) and
that for an access token of the challenge's one repository (``POST /oauth2/token``), and sends the call again.
Its refresh-token cache test is inverted, so that is 4 requests per repository. Listing the tags of 25 image
names cost 100 requests.

The ACR token endpoint takes several scopes in one request (``scope=repository:a:metadata_read
repository:b:metadata_read``; the Docker token specification, which ACR implements: Azure/acr
docs/AAD-OAuth.md, and ``AcrAccessToken`` in azure-rest-api-specs
specification/containerregistry/data-plane/Azure.ContainerRegistry/stable/2021-07-01/containerregistry.json).
So the run makes the two exchanges once, for all its repositories, and every listing sends the access token
itself (``headers={"Authorization": ...}``): one request per repository. Should the token be refused (expired,
a repository missing from its scope), the SDK's own challenge handling still answers the 401: the result is
the same, only slower.

The AAD token is asked for with the scope azure-containerregistry and azureml ask for
(``https://management.core.windows.net/.default``), so the credential's cache serves it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from reconciler.providers.azure import errors
from reconciler.providers.azure.auth import MANAGEMENT_SCOPE
from reconciler.providers.azure.retry import Retrier

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential



class AcrTokens:
    """Access tokens of one registry's data plane, for this run (thread-safe: listings run in a pool)."""

    def __init__(self, login_server: str, credential: TokenCredential, retrier: Retrier) -> None:
        self.login_server = login_server
        self._credential = credential
        self._retrier = retrier
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[frozenset[str], str]] = {}  # action -> (repositories, access token)

    def authorization(self, repositories: Iterable[str], action: str = "metadata_read") -> dict[str, str]:
        """The ``Authorization`` header for ``action`` on ``repositories``: a token covering them, fetched once
        (a later call for a subset reuses it)."""
        wanted = frozenset(repositories)
        with self._lock:
            held = self._tokens.get(action)
            if held is None or not wanted <= held[0]:
                scope = wanted | (held[0] if held else frozenset())
                held = (scope, self._retrier.call(lambda: self._fetch(scope, action),
                                                  what=f"registry {self.login_server} (data plane token)",
                                                  write=False))
                self._tokens[action] = held
        return {"Authorization": f"Bearer {held[1]}"}

    def _fetch(self, repositories: frozenset[str], action: str) -> str:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import CustomHookPolicy, HeadersPolicy
        from azure.core.rest import HttpRequest, HttpResponse

        stats = self._retrier.stats
        policies = [HeadersPolicy(), CustomHookPolicy(raw_response_hook=lambda response: stats.count_http("acr"))]
        client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(f"https://{self.login_server}",
                                                                          policies=policies)

        def post(path: str, form: dict[str, str]) -> Any:
            response = client.send_request(HttpRequest("POST", f"https://{self.login_server}{path}", data=form))
            response.raise_for_status()
            return response.json()

        try:
            aad = self._credential.get_token(MANAGEMENT_SCOPE).token
            refresh = str(post("/oauth2/exchange", {"grant_type": "access_token", "service": self.login_server,
                                                    "access_token": aad})["refresh_token"])
            errors.register_secret(refresh)
            scope = " ".join(f"repository:{repo}:{action}" for repo in sorted(repositories))
            access = str(post("/oauth2/token", {"grant_type": "refresh_token", "service": self.login_server,
                                                "scope": scope, "refresh_token": refresh})["access_token"])
        finally:
            client.close()
        errors.register_secret(access)
        return access
