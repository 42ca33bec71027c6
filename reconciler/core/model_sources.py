"""Models whose content is not in the repository (``spec.source``): what the plan needs to know of them.

* A **registered version** (``source.registered``) is packaged as it is: the reconciler never registers,
  changes or deletes it. Its fingerprint is the one the backend reports for that version in the snapshot
  (providers read every version a spec names, whoever owns it). A version that is not there is a spec error,
  located at the ``registered`` field: nothing can be planned around a model that does not exist.
* A **URI** (``source.uri``) pins the digest of its one file, so its fingerprint needs no read
  (``spec.fingerprints.uri_fingerprint``). The URI is read only when a plan registers a new version:
  ``uri_mismatches`` turns what the backend read into spec errors at the ``digest`` field.

Pure: the snapshot and the digests read are inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.errors import SpecError
from reconciler.model.diagnostics import Diagnostic
from reconciler.model.plan import Action, DesiredModel, Plan
from reconciler.model.specs import DesiredState, Kind, ModelSpec, UriSource
from reconciler.model.state import ModelVersion, Snapshot

BACKENDS = {"local": "the local state", "azure": "the Azure ML workspace"}


def registered_version(spec: ModelSpec, snapshot: Snapshot) -> ModelVersion | None:
    source = spec.registered
    if source is None:
        return None
    return next((m for m in snapshot.models if (m.name, m.version) == (source.name, source.version)), None)


def registered_fingerprints(desired: DesiredState, snapshot: Snapshot) -> dict[str, str]:
    """Spec name -> fingerprint of every model whose source is a registered version. Raises ``SpecError``
    naming each version that does not exist (or whose content the backend cannot tell)."""
    where = BACKENDS.get(desired.environment.provider, f"the {desired.environment.provider} backend")
    found: dict[str, str] = {}
    problems = []
    for name, spec in sorted(desired.models.items()):
        source = spec.registered
        if source is None:
            continue
        version = registered_version(spec, snapshot)
        if version is None:
            problems.append(Diagnostic(source.location, f"Model/{name}", "spec.source.registered",
                                       f"model version {source} does not exist in {where}; name a version that is "
                                       "registered there (versions are never reused once deleted)"))
        elif not version.fingerprint:
            problems.append(Diagnostic(source.location, f"Model/{name}", "spec.source.registered",
                                       f"{where} reports no content for model version {source}"))
        else:
            found[name] = version.fingerprint
    if problems:
        raise SpecError(problems)
    return found


def uris_to_read(plan: Plan) -> list[tuple[str, UriSource]]:
    """(spec name, source) of each model from a URI that the plan registers a new version of: only these are
    read (a version with this digest was read and checked when it was registered)."""
    found = []
    for change in plan.changes:
        if change.key.kind is Kind.MODEL and change.action in (Action.CREATE, Action.NEW_VERSION) \
                and isinstance(change.desired, DesiredModel) and change.desired.spec.uri is not None:
            found.append((change.key.name, change.desired.spec.uri))
    return found


def uri_mismatches(read: Mapping[str, tuple[UriSource, str]]) -> list[Diagnostic]:
    """Spec name -> (source, the SHA-256 read at its URI): a diagnostic at the ``digest`` field of each that
    differs from the pinned digest."""
    return [Diagnostic(source.digest_location, f"Model/{name}", "spec.source.digest",
                       f"the file at {source.uri} has digest sha256:{actual}, not the pinned {source.digest}; if the "
                       "new file is the one you want, pin its digest (nothing was registered)")
            for name, (source, actual) in sorted(read.items()) if actual != source.sha256]
