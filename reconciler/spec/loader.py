"""Load an environment folder into a ``DesiredState``, collecting every problem.

Stages, each of which only runs on documents that passed the previous one:

1. read every ``*.yaml`` / ``*.yml`` under the folder (``yaml_source``: safe, located);
2. validate each document against its kind's JSON Schema (``schemas``);
3. build typed specs (``model.specs``) with defaults applied and paths resolved;
4. cross-check them (``checks``): names, references, files, scripts, IoT Hub rules.

Nothing is executed and nothing is written. All problems are raised together as one
``SpecError``, in file order.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import SpecError
from reconciler.model.behaviour import (
    DEFAULT_REPEAT,
    DEFAULT_START_TIMEOUT_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    ChangedOutputsLimit,
    Gates,
    SamplesSpec,
)
from reconciler.model.diagnostics import Diagnostic, SourceLocation
from reconciler.model.specs import (
    DeploymentSpec,
    DesiredState,
    EnvironmentSpec,
    GateSpec,
    ImageSpec,
    MetricGate,
    ModelSource,
    ModelSpec,
    ModuleSpec,
    PromotedImageSpec,
    RegisteredSource,
    RegistrySpec,
    RingSpec,
    RolloutSpec,
    UriSource,
)
from reconciler.spec import promotion
from reconciler.spec.folders import Folders
from reconciler.spec.paths import display_path, find_repository_root
from reconciler.spec.promotion import PromotionRequest
from reconciler.spec.schemas import dotted, subject_of, validate_document
from reconciler.spec.verdicts import Verdicts

if TYPE_CHECKING:
    # PyYAML and the checks (the hub's rules, ``ast``) are imported only when the specs are loaded afresh:
    # an unchanged environment comes from its verdict (``verdicts``) without them.
    from reconciler.spec.yaml_source import Document

ENVIRONMENT_FILE = "environment.yaml"


@dataclass(frozen=True)
class Located:
    """A typed spec with the document it came from (for locating later problems)."""

    spec: Any
    document: Document


def spec_files(directory: Path) -> list[Path]:
    files = [p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(files, key=lambda p: (p.name != ENVIRONMENT_FILE, str(p.relative_to(directory))))


def load_environment(directory: Path, folders: Folders | None = None, *,
                     promoting: tuple[Path, ...] = ()) -> DesiredState:
    """``load_with_verdict`` without the verdict."""
    return load_with_verdict(directory, folders, promoting=promoting)[0]


def load_with_verdict(directory: Path, folders: Folders | None = None, *,
                      promoting: tuple[Path, ...] = ()) -> tuple[DesiredState, str | None]:
    """Load and validate an environment folder. Raises ``SpecError`` with every problem. ``folders``: the
    run's folder listings, for the engine to fingerprint the model folders the checks walked.

    The environments its images are promoted from (``spec.promoteFrom``) are loaded with it;
    ``promoting`` holds the folders whose loading asked for this one, to refuse a cycle.
    Also returns the token of the verdict (``spec.verdicts``) the load came from or was kept as, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError([Diagnostic(SourceLocation(display_path(directory)), "", "", "not a folder: pass "
                                                                                     "environments/<name>")])
    root = find_repository_root(directory)
    files = spec_files(directory)
    verdicts = Verdicts.for_environment(root, directory, files)
    known = verdicts.load()
    if known is not None:
        return known, verdicts.token
    desired = _load(directory, root, files, folders, promoting)
    verdicts.save(desired)
    return desired, verdicts.token


def _load(directory: Path, root: Path, files: list[Path], folders: Folders | None,
          promoting: tuple[Path, ...]) -> DesiredState:
    """Parse, validate and check the spec files afresh."""
    from reconciler.spec import checks
    from reconciler.spec.cache import SpecCache, digest
    from reconciler.spec.yaml_source import YamlProblem, load_documents, problem_diagnostic, read_text

    cache = SpecCache.for_environment(root, directory)
    diagnostics: list[Diagnostic] = []
    documents: list[Document] = []
    for file in files:
        shown = display_path(file)
        try:
            text = read_text(file, shown)
            text_digest = digest(text)
            parsed = cache.documents(file, shown, text_digest)
            if parsed is None:
                parsed = list(load_documents(file, shown, text))
                cache.remember(text_digest, parsed)
            documents.extend(parsed)
        except YamlProblem as problem:
            diagnostics.append(problem_diagnostic(problem))

    valid: list[Document] = []
    for document in documents:
        subject = subject_of(document.data)
        diagnostics.extend(Diagnostic(location, subject, dotted(path), message)
                           for location, path, message in document.problems)
        if cache.known_valid(document):
            valid.append(document)
            continue
        problems = validate_document(document)
        diagnostics.extend(problems)
        if not problems:
            valid.append(document)
            cache.add_valid(document)
    cache.save()

    environment_docs = [d for d in valid if d.data["kind"] == "Environment"]
    all_environment_docs = [d for d in documents if isinstance(d.data, dict) and d.data.get("kind") == "Environment"]
    if not all_environment_docs:
        diagnostics.append(Diagnostic(SourceLocation(display_path(directory / ENVIRONMENT_FILE)), "", "",
                                      f"no Environment document: create {ENVIRONMENT_FILE} with kind: Environment"))
    for extra in all_environment_docs[1:]:
        first = all_environment_docs[0].location(("kind",))
        diagnostics.append(Diagnostic(extra.location(("kind",)), subject_of(extra.data), "kind",
                                      "only one Environment document is allowed per environment folder "
                                      f"(the first is at {first})"))

    environment = _environment(environment_docs[0], directory, root) if len(environment_docs) == 1 else None
    models = [Located(_model(d), d) for d in valid if d.data["kind"] == "Model"]
    images = [Located(_image(d, directory), d) for d in valid if d.data["kind"] == "Image"]
    deployments = [Located(_deployment(d), d) for d in valid if d.data["kind"] == "Deployment"]

    # Names of documents that failed the schema still exist: references to them are not errors.
    checked = {id(d) for d in valid}
    declared = {subject_of(d.data) for d in documents if id(d) not in checked}
    diagnostics.extend(checks.check_all(environment, models, images, deployments, root, declared, folders))
    promoted = [item for item in images if isinstance(item.spec, PromotionRequest)]
    resolved: dict[str, PromotedImageSpec] = {}
    if promoted and environment is not None:
        found, problems = promotion.resolve(environment, promoted, (*promoting, directory.resolve()))
        resolved.update(found)
        diagnostics.extend(problems)
    if diagnostics:
        raise SpecError(sorted(set(diagnostics)))
    assert environment is not None
    return DesiredState(
        environment=environment,
        models={item.spec.name: item.spec for item in models},
        images={item.spec.name: item.spec for item in images if isinstance(item.spec, ImageSpec)},
        deployments={item.spec.name: item.spec for item in deployments},
        promotions=resolved,
    )


def _here(document: Document) -> Path:
    return _folder_of(os.getcwd(), document.file)


@functools.lru_cache(maxsize=1024)
def _folder_of(working_directory: str, file: Path) -> Path:
    """A spec file's folder as an absolute path, made once per file and working directory rather than once
    per document (``Path.absolute`` builds new paths each time: 1,300 calls and 0.08 s in the benchmark
    environment's no-op plan)."""
    return Path(working_directory, file.parent) if not file.is_absolute() else file.parent


def _metadata(document: Document) -> tuple[str, str, dict[str, str]]:
    metadata = document.data["metadata"]
    return metadata["name"], metadata.get("description", ""), dict(metadata.get("tags", {}))


def _environment(document: Document, directory: Path, root: Path) -> EnvironmentSpec:
    name, _, _ = _metadata(document)
    spec = document.data["spec"]
    provider = spec["provider"]
    registries = {
        registry_name: RegistrySpec(name=registry_name, settings=dict(settings or {}))
        for registry_name, settings in spec.get("registries", {}).items()
    }
    return EnvironmentSpec(
        name=name,
        provider=provider,
        settings=dict(spec.get(provider, {}) or {}),
        registries=registries,
        directory=directory.resolve(),
        repository_root=root,
        location=document.location(()),
    )


def _model(document: Document) -> ModelSpec:
    name, description, tags = _metadata(document)
    spec = document.data["spec"]
    return ModelSpec(
        name=name,
        path=_here(document) / spec["path"] if "path" in spec else None,
        description=description,
        tags=tags,
        properties=dict(spec.get("properties", {})),
        location=document.location(()),
        source=_model_source(document, spec.get("source")),
    )


def _model_source(document: Document, source: dict[str, Any] | None) -> ModelSource | None:
    """``spec.source`` (the schema allows exactly one of ``registered`` and ``uri``)."""
    if source is None:
        return None
    if "registered" in source:
        registered = source["registered"]
        return RegisteredSource(registered["name"], int(registered["version"]),
                                document.location(("spec", "source", "registered")))
    return UriSource(source["uri"], source["digest"], document.location(("spec", "source", "uri")),
                     document.location(("spec", "source", "digest")))


def _image(document: Document, directory: Path) -> ImageSpec | PromotionRequest:
    name, description, tags = _metadata(document)
    spec = document.data["spec"]
    if "promoteFrom" in spec:
        source = spec["promoteFrom"]
        return PromotionRequest(name, source["environment"], source["image"],
                                 directory.absolute().parent / source["environment"], description, tags,
                                 document.location(()))
    source = _here(document) / spec["sourceDirectory"] if "sourceDirectory" in spec else None
    base = source if source is not None else _here(document)
    return ImageSpec(
        name=name,
        runtime=spec.get("runtime", "python"),
        entry_script=base / spec["entryScript"],
        conda_file=base / spec["condaFile"],
        source_directory=source,
        models=tuple(spec["models"]),
        description=description,
        tags=tags,
        location=document.location(()),
        samples=_samples(document, spec.get("samples")),
        gates=_gates(spec.get("gates") or {}),
    )


def _samples(document: Document, samples: dict[str, Any] | None) -> SamplesSpec | None:
    if samples is None:
        return None
    return SamplesSpec(path=_here(document) / samples["path"], repeat=samples.get("repeat", DEFAULT_REPEAT),
                       timeout_seconds=float(samples.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
                       start_timeout_seconds=float(samples.get("startTimeoutSeconds", DEFAULT_START_TIMEOUT_SECONDS)))


def _gates(gates: dict[str, Any]) -> Gates:
    changed = gates.get("maxChangedOutputs")
    limit = None
    if isinstance(changed, str):
        limit = ChangedOutputsLimit(float(changed.rstrip("%")), percent=True)
    elif changed is not None:
        limit = ChangedOutputsLimit(float(changed), percent=False)
    latency = gates.get("maxLatencyP95Ms")
    return Gates(max_changed_outputs=limit, max_latency_p95_ms=float(latency) if latency is not None else None,
                 must_match_expected=gates.get("mustMatchExpected", True))


def _module(name: str, spec: dict[str, Any]) -> ModuleSpec:
    return ModuleSpec(
        name=name,
        image=spec["image"],
        create_options=dict(spec.get("createOptions", {})),
        env=dict(spec.get("env", {})),
        restart_policy=spec.get("restartPolicy", "always"),
        status=spec.get("status", "running"),
        startup_order=spec.get("startupOrder"),
        image_pull_policy=spec.get("imagePullPolicy"),
        desired_properties=dict(spec.get("desiredProperties", {})),
    )


def deployment_spec(document: Document) -> DeploymentSpec:
    """The typed spec of one Deployment document that passed its schema (``reconciler import`` renders it)."""
    return _deployment(document)


def _deployment(document: Document) -> DeploymentSpec:
    name, description, tags = _metadata(document)
    spec = document.data["spec"]
    return DeploymentSpec(
        name=name,
        target_condition=spec.get("targetCondition"),
        device_ids=tuple(spec.get("deviceIds", ())),
        priority=spec.get("priority", 0),
        layered=spec.get("layered", False),
        registry=spec.get("registry"),
        modules=tuple(_module(module_name, module) for module_name, module in sorted(spec["modules"].items())),
        routes=dict(spec.get("routes", {})),
        edge_agent=dict(spec.get("edgeAgent", {})),
        edge_hub=dict(spec.get("edgeHub", {})),
        labels=tags,
        metrics=dict(spec.get("metrics", {})),
        description=description,
        location=document.location(()),
        rollout=_rollout(spec["rollout"]) if "rollout" in spec else None,
        adopt=spec.get("adopt"),
        create_options_key_order=spec.get("createOptionsKeyOrder", "sorted"),
    )


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``1h30m`` -> 5400. The schema has checked the form (``(\\d+[smhd])+``)."""
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in re.findall(r"(\d+)([smhd])", text))


def _rollout(rollout: dict[str, Any]) -> RolloutSpec:
    gates = rollout.get("gates", {"minSuccessPercent": 100, "maxFailedDevices": 0})
    return RolloutSpec(
        rings=tuple(RingSpec(ring["name"], ring["targetCondition"], duration_seconds(ring["soak"]), ring["soak"])
                    for ring in rollout["rings"]),
        gates=GateSpec(
            min_success_percent=gates.get("minSuccessPercent"),
            max_failed_devices=gates.get("maxFailedDevices"),
            metrics={name: MetricGate(bounds.get("max"), bounds.get("min"))
                     for name, bounds in sorted(gates.get("metrics", {}).items())},
        ),
        on_failure=rollout.get("onFailure", "rollback"),
    )
