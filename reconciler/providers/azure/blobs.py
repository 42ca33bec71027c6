"""Model files at Azure Blob Storage URIs (``spec.source.uri``): read with the provider's Azure credential.

Why the reconciler downloads and hashes instead of asking Azure ML to register "from the URI": azureml-core
1.61 (SDK v1) registers only local files (``Model.register(model_path=...)`` uploads them through the
artifact service); a registration that pointed at the blob would let the service read it later, and the
digest pinned in the spec could not be checked on the bytes that end up registered. So the blob is streamed
once through SHA-256 into a temporary file, refused when its digest is not the pinned one, and that very file
is what ``Model.register`` uploads. A plan that registers such a model reads it once more to check the digest
before anything is applied (``ModelUris``): a plan and its apply read the blob twice, and a plan with
nothing to register never reads it.

Authentication is Microsoft Entra ID only (``Authorization: Bearer`` for ``https://storage.azure.com/``;
the identity needs the Storage Blob Data Reader role): a URI with a SAS token would put a secret in git and
is refused by ``validate``. One ``GET`` per read, through the provider's ``Retrier`` (a read: retried on
throttling, 5xx and lost answers). azure-core's ``PipelineClient`` does the HTTP, with the same proxy and CA
settings as every other Azure call.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError
from reconciler.model.specs import ModelSpec
from reconciler.providers.azure import errors
from reconciler.providers.azure.retry import Retrier
from reconciler.providers.base import Progress

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_VERSION = "2021-08-06"  # Entra ID authorization needs 2017-11-09 or later
CHUNK = 1024 * 1024


def read_blob(uri: str, credential: TokenCredential, retrier: Retrier, progress: Progress,
              destination: Path | None = None) -> str:
    """The SHA-256 (hex) of the blob at ``uri``, streamed; its bytes written to ``destination`` when given."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy
    from azure.core.rest import HttpRequest

    client: Any = PipelineClient(base_url=uri, policies=[
        HeadersPolicy({"x-ms-version": STORAGE_VERSION}),
        BearerTokenCredentialPolicy(credential, STORAGE_SCOPE),
    ])

    def read() -> str:
        response = client.send_request(HttpRequest("GET", uri), stream=True)
        try:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length") or 0) or None
            sha, done = hashlib.sha256(), 0
            target = destination.open("wb") if destination is not None else None
            try:
                for chunk in response.iter_bytes(chunk_size=CHUNK):
                    sha.update(chunk)
                    if target is not None:
                        target.write(chunk)
                    done += len(chunk)
                    progress.advance(done, total)
            finally:
                if target is not None:
                    target.close()
            return sha.hexdigest()
        finally:
            response.close()

    try:
        return retrier.call(read, what=uri, write=False)
    except PermanentProviderError as error:
        failure = errors.describe(error.__cause__) if error.__cause__ is not None else None
        status = failure.status if failure is not None else None
        if status in (401, 403):
            raise PermanentProviderError(
                "the reconciler's Azure identity may not read this blob: grant it the Storage Blob Data Reader role "
                "on the storage account or container", resource=uri) from error
        if status == 404:
            raise PermanentProviderError("no such blob: check the URI in spec.source.uri", resource=uri) from error
        raise
    finally:
        client.close()


@contextmanager
def downloaded_model(spec: ModelSpec, credential: TokenCredential, retrier: Retrier,
                     progress: Progress) -> Iterator[Path]:
    """The file of a model from a blob (``spec.source.uri``), downloaded once into a temporary folder of its own
    and checked against the pinned digest; the folder (what is registered or packaged) is removed afterwards.
    Every SDK path that needs the bytes (v1 and v2 registration, ACR Tasks builds) takes them from here."""
    source = spec.uri
    assert source is not None
    with tempfile.TemporaryDirectory(prefix="reconciler-model-") as folder:
        path = Path(folder) / source.file_name
        progress.step(f"downloading model {spec.name} from {source.uri}")
        digest = read_blob(source.uri, credential, retrier, progress, path)
        if digest != source.sha256:
            raise PermanentProviderError(f"the blob at {source.uri} has digest sha256:{digest}, not the pinned "
                                         f"{source.digest}: nothing was registered; run `reconciler plan` again",
                                         resource=f"model/{spec.name}")
        yield path
