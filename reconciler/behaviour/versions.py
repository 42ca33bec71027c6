"""Which versions a behaviour run compares, and the plan's behaviour section.

* the new version: the Image spec's files with its models' files as they are in the repository
  (not registered yet), numbered as they will be (``AZUREML_MODEL_DIR`` holds the version);
* the deployed version: what the newest built image runs, read back from the backend
  (``BuiltImageFiles``): its own entry script, source directory and conda file (not the repository's:
  a change of score.py alone shows as changed outputs) and the model versions it packages.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from reconciler.behaviour.runner import ImageVersionFiles, copy_file
from reconciler.behaviour.service import Behaviour
from reconciler.core.behaviour import evaluate
from reconciler.errors import BehaviourError, PermanentProviderError
from reconciler.model.behaviour_results import BehaviourReport, ImageBehaviour
from reconciler.model.plan import Action, Change, DesiredImage, Plan
from reconciler.model.specs import DesiredState, Fingerprints, ImageSpec, ModelSpec
from reconciler.model.state import ImageVersion, Snapshot
from reconciler.providers.base import BuiltImageFiles, Provider
from reconciler.providers.layout import APP, CONDA_FILE, ENVIRONMENT, PackagedModel, registered_files
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
        models.append(PackagedModel(name, version, _model_files(desired.models[name], spec)))
    return ImageVersionFiles(spec, tuple(models), copy_file)


def _model_files(model: ModelSpec, image: ImageSpec) -> dict[str, str]:
    """A model's files on this machine, as they will be registered: its folder in the repository, or the file a
    ``file://`` URI names (the plan checks its digest before registering it). A registered version or a blob
    is not downloaded to run samples."""
    if model.path is not None:
        return {relative: str(path) for relative, path in registered_files(model.path).items()}
    if model.uri is not None and model.uri.uri.startswith("file:"):
        return {model.uri.file_name: url2pathname(urlsplit(model.uri.uri).path)}
    where = f"registered version {model.registered}" if model.registered else model.uri.uri if model.uri else "?"
    raise BehaviourError(f"the samples of image {image.name} are not run: model {model.name} is not on this machine "
                         f"({where}); run `reconciler plan --skip-behaviour`, or point the model at its files")


def _deployed(provider: Provider, spec: ImageSpec, actual: ImageVersion, snapshot: Snapshot, work: Path
              ) -> tuple[ImageVersionFiles, str] | str:
    """The deployed version (its files under ``work``) and its cache fingerprint, or why it cannot be run."""
    if not isinstance(provider, BuiltImageFiles):
        return "the deployed side is not compared: this backend cannot hand out what a built image runs"
    try:
        built = provider.built_image_files(actual.name, actual.label, work)
    except PermanentProviderError as exc:  # a transient failure fails the plan: a gate cannot be judged half
        return f"the deployed side is not compared: {exc}"
    if built is None:
        return f"the deployed side is not compared: {actual.name}:{actual.label} is gone from the backend"
    if sorted(m.name for m in built.models) != sorted(spec.models):
        return "the deployed side is not compared: it packages other models than the spec lists now"
    # The deployed image's own app: the layout code writes it into the run's folder as it wrote the image.
    deployed_spec = dataclasses.replace(spec, entry_script=work / APP / built.entry, source_directory=work / APP,
                                        conda_file=work / ENVIRONMENT / CONDA_FILE)
    fingerprints = {m.name: next((v.fingerprint for v in snapshot.models if (v.name, v.version) == (m.name, m.version)
                                  and v.fingerprint), f"{m.name}:{m.version}:{sorted(m.files.items())}")
                    for m in built.models}
    return (ImageVersionFiles(deployed_spec, built.models, built.copy),
            image_fingerprint(deployed_spec, fingerprints, HashCache()))


def report(plan: Plan, desired: DesiredState, fingerprints: Fingerprints, snapshot: Snapshot, provider: Provider,
           behaviour: Behaviour, *, skip: bool = False) -> BehaviourReport | None:
    """Run the samples of every image the plan builds (new image or new version) that has them."""
    changes = plan.sampled_changes
    if not changes:
        return None
    if skip:
        return BehaviourReport(skipped=tuple(c.key.name for c in changes))
    with tempfile.TemporaryDirectory(prefix="reconciler-deployed-") as folder:
        return BehaviourReport(images=tuple(_image(change, desired, fingerprints, snapshot, provider, behaviour,
                                                   Path(folder) / str(number))
                                            for number, change in enumerate(changes)))


def _image(change: Change, desired: DesiredState, fingerprints: Fingerprints, snapshot: Snapshot,
           provider: Provider, behaviour: Behaviour, work: Path) -> ImageBehaviour:
    assert isinstance(change.desired, DesiredImage)
    spec = change.desired.spec
    samples = behaviour.samples(spec)
    new = behaviour.run(new_version(desired, spec, fingerprints, snapshot), change.desired.fingerprint, samples,
                        label=f"{change.target} (new)")
    before = None
    note = ""
    if change.action is Action.NEW_VERSION and isinstance(change.actual, ImageVersion):
        work.mkdir(parents=True)
        deployed = _deployed(provider, spec, change.actual, snapshot, work)
        if isinstance(deployed, str):
            note = deployed
        else:
            version, fingerprint = deployed
            before = behaviour.run(version, fingerprint, samples,
                                   label=f"{change.actual.name}:{change.actual.label} (deployed)")
    python = new.python
    if python is not None and python.note:
        note = f"{note}; {python.note}" if note else python.note
    return evaluate(spec.name, change.target, samples, new.result, before.result if before else None, spec.gates,
                    note=note, cached=new.cached and (before is None or before.cached))
