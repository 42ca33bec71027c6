"""Which versions a behaviour run compares, and the plan's behaviour section.

* the new version: the Image spec's files with its models' files as they are in the repository
  (not registered yet), numbered as they will be (``AZUREML_MODEL_DIR`` holds the version);
* the deployed version: the model versions the newest built image packages, their files from the
  backend (``ImageModelFiles``), scored by the spec's current entry script and environment. A
  change of score.py alone therefore shows in the new version's expected outputs and latency,
  not as changed outputs (the deployed script is not read back from the backend).
"""

from __future__ import annotations

from reconciler.behaviour.runner import ImageVersionFiles, copy_file
from reconciler.behaviour.service import Behaviour
from reconciler.core.behaviour import changes_with_samples, evaluate
from reconciler.model.behaviour import BehaviourReport, ImageBehaviour
from reconciler.model.plan import Action, DesiredImage, Plan
from reconciler.model.specs import DesiredState, Fingerprints, ImageSpec
from reconciler.model.state import ImageVersion, Snapshot
from reconciler.providers.base import ImageModelFiles, Provider
from reconciler.providers.layout import PackagedModel, registered_files
from reconciler.spec.fingerprints import HashCache, image_fingerprint


def new_version(desired: DesiredState, spec: ImageSpec, fingerprints: Fingerprints | None = None,
                snapshot: Snapshot | None = None) -> ImageVersionFiles:
    """The spec's version, models from their folders. Version numbers: the registered version with
    the same files, else the next one (1 without a snapshot)."""
    models = []
    for name in spec.models:
        version = 1
        if snapshot is not None:
            versions = [m for m in snapshot.models if m.name == name]
            fingerprint = fingerprints.models.get(name) if fingerprints else None
            same = [m.version for m in versions if fingerprint is not None and m.fingerprint == fingerprint]
            version = max(same) if same else max((m.version for m in versions), default=0) + 1
        files = {relative: str(path) for relative, path in registered_files(desired.models[name].path).items()}
        models.append(PackagedModel(name, version, files))
    return ImageVersionFiles(spec, tuple(models), copy_file)


def _deployed(provider: Provider, spec: ImageSpec, actual: ImageVersion, snapshot: Snapshot
              ) -> tuple[ImageVersionFiles, str] | str:
    """The deployed version and its cache fingerprint, or why it cannot be run."""
    if not isinstance(provider, ImageModelFiles):
        return ("the deployed side is not compared: this backend cannot hand out a built image's model files yet "
                "(supported: local)")
    found = provider.image_models(actual.name, actual.label)
    if found is None:
        return f"the deployed side is not compared: {actual.name}:{actual.label} is gone from the backend"
    models, copy = found
    if sorted(m.name for m in models) != sorted(spec.models):
        return "the deployed side is not compared: it packages other models than the spec lists now"
    fingerprints = {m.name: next((v.fingerprint for v in snapshot.models if (v.name, v.version) == (m.name, m.version)
                                  and v.fingerprint), f"{m.name}:{m.version}:{sorted(m.files.items())}")
                    for m in models}
    return ImageVersionFiles(spec, tuple(models), copy), image_fingerprint(spec, fingerprints, HashCache())


def report(plan: Plan, desired: DesiredState, fingerprints: Fingerprints, snapshot: Snapshot, provider: Provider,
           behaviour: Behaviour, *, skip: bool = False) -> BehaviourReport | None:
    """Run the samples of every image the plan builds (new image or new version) that has them."""
    changes = changes_with_samples(plan)
    if not changes:
        return None
    if skip:
        return BehaviourReport(skipped=tuple(c.key.name for c in changes))
    images: list[ImageBehaviour] = []
    for change in changes:
        assert isinstance(change.desired, DesiredImage)
        spec = change.desired.spec
        samples = behaviour.samples(spec)
        new = behaviour.run(new_version(desired, spec, fingerprints, snapshot), change.desired.fingerprint, samples,
                            label=f"{change.target} (new)")
        before = None
        note = ""
        if change.action is Action.NEW_VERSION and isinstance(change.actual, ImageVersion):
            deployed = _deployed(provider, spec, change.actual, snapshot)
            if isinstance(deployed, str):
                note = deployed
            else:
                version, fingerprint = deployed
                before = behaviour.run(version, fingerprint, samples,
                                       label=f"{change.actual.name}:{change.actual.label} (deployed)")
        python = new.python
        if python is not None and python.note:
            note = f"{note}; {python.note}" if note else python.note
        images.append(evaluate(spec.name, change.target, samples, new.result,
                               before.result if before else None, spec.gates, note=note,
                               cached=new.cached and (before is None or before.cached)))
    return BehaviourReport(images=tuple(images))
