"""Checks a JSON Schema cannot express: names, references, files, scripts, hub rules.

Each check returns diagnostics located at the spec field they concern. They read the
referenced files (model files, entry scripts, conda files) but never execute them: an
entry script is inspected with ``ast``, never imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import yaml

from reconciler.hub import limits
from reconciler.hub.conditions import ConditionError, parse
from reconciler.hub.manifest import create_options_chunks
from reconciler.model.diagnostics import Diagnostic, SourceLocation
from reconciler.model.specs import DeploymentSpec, EnvironmentSpec, ImageSpec, ModelSpec
from reconciler.spec.folders import Folders
from reconciler.spec.paths import Boundary, display_path
from reconciler.spec.samples import Problem, SampleProblems, read_samples
from reconciler.spec.schemas import dotted, subject_of
from reconciler.spec.yaml_source import YamlProblem, read_text

if TYPE_CHECKING:
    from reconciler.spec.loader import Located


def check_all(
    environment: EnvironmentSpec | None,
    models: Sequence[Located],
    images: Sequence[Located],
    deployments: Sequence[Located],
    root: Path,
    declared: Iterable[str] = (),
    folders: Folders | None = None,
) -> list[Diagnostic]:
    """``declared``: ``kind/name`` of documents that exist but failed the schema (not checked
    here, but references to them are not reported as missing). ``folders``: this run's folder
    listings, shared with fingerprinting."""
    found: list[Diagnostic] = []
    found += _duplicates([*models, *images, *deployments])
    declared = set(declared)
    model_names = {item.spec.name for item in models} | _names(declared, "Model")
    image_names = {item.spec.name for item in images} | _names(declared, "Image")
    registry_names = set(environment.registries) if environment else None
    boundary = Boundary(root)
    provider = environment.provider if environment else None
    folders = folders or Folders(remember=False)
    for item in models:
        found += _model(item, boundary, provider, folders)
    file_checks = FileChecks()
    for item in images:
        if isinstance(item.spec, ImageSpec):  # else promoted: spec.promotion checks it with its source
            found += _image(item, model_names, boundary, file_checks)
    for item in deployments:
        found += _deployment(item, image_names, registry_names)
    found += _rollout_priorities(deployments)
    found += _adopted_twice(deployments)
    rolling = sum(1 for item in deployments if item.spec.rollout is not None)
    if len(deployments) + rolling > limits.MAX_DEPLOYMENTS_PER_HUB:
        extra = deployments[min(len(deployments) - 1, limits.MAX_DEPLOYMENTS_PER_HUB)]
        during = f" ({rolling} more while their rollouts run: a rollout holds 2)" if rolling else ""
        found.append(_at(extra, ("metadata", "name"),
                         f"{len(deployments)} deployments in one environment{during}; an IoT Hub holds at most "
                         f"{limits.MAX_DEPLOYMENTS_PER_HUB} (layered ones included)"))
    return found


def _adopted_twice(deployments: Sequence[Located]) -> list[Diagnostic]:
    """One existing deployment can be taken over by one spec only (``spec.adopt``)."""
    first: dict[str, Located] = {}
    found = []
    for item in deployments:
        adopt = item.spec.adopt
        if adopt is None:
            continue
        if adopt in first:
            found.append(_at(item, ("spec", "adopt"), f"deployment {adopt!r} is adopted by deployment/"
                                                      f"{first[adopt].spec.name} already; only one spec can take "
                                                      "it over"))
        else:
            first[adopt] = item
    return found


def _rollout_priorities(deployments: Sequence[Located]) -> list[Diagnostic]:
    """A rollout's candidate runs at priority + 1. If another deployment has that priority, IoT Hub
    breaks the tie on devices both target by creation time, so which one applies (and whether a
    layered deployment still applies above it) would depend on timing."""
    found = []
    by_priority: dict[int, list[str]] = {}
    for item in deployments:
        by_priority.setdefault(item.spec.priority, []).append(item.spec.name)
    for item in deployments:
        spec: DeploymentSpec = item.spec
        if spec.rollout is None:
            continue
        ties = sorted(name for name in by_priority.get(spec.priority + 1, []) if name != spec.name)
        if ties:
            found.append(_at(item, ("spec", "priority"),
                             f"during a rollout the candidate runs at priority {spec.priority + 1}, which ties with "
                             f"deployment {', '.join(ties)} on devices both target; leave a gap of 2 between their "
                             "priorities"))
    return found


def _names(subjects: set[str], kind: str) -> set[str]:
    prefix = f"{kind}/"
    return {subject[len(prefix):] for subject in subjects if subject.startswith(prefix)}


def _at(item: Located, path: tuple[str | int, ...], message: str, *, key: bool = False) -> Diagnostic:
    document = item.document
    return Diagnostic(document.location(path, key=key), subject_of(document.data), dotted(path), message)


def _duplicates(items: Iterable[Located]) -> list[Diagnostic]:
    seen: dict[tuple[str, str], SourceLocation] = {}
    found = []
    for item in items:
        identity = (item.document.data["kind"], item.spec.name)
        if identity in seen:
            first = seen[identity]
            found.append(_at(item, ("metadata", "name"),
                             f"duplicate name: {identity[0]} {identity[1]!r} is already defined at {first}"))
        else:
            seen[identity] = item.document.location(("metadata", "name"))
    return found


def _file_problem(path: Path, boundary: Boundary, *, want: str) -> str | None:
    """Why ``path`` cannot be used, or None. ``want`` is "file", "folder" or "any"."""
    if not boundary.contains(path):
        link = " is a link that" if path.is_symlink() else ""
        return f"{display_path(path)}{link} resolves outside the repository; spec files may only use files inside it"
    if not path.exists():
        return f"no such {'file or folder' if want == 'any' else want}: {display_path(path)}"
    if want == "file" and not path.is_file():
        return f"{display_path(path)} is not a file"
    if want == "folder" and not path.is_dir():
        return f"{display_path(path)} is not a folder"
    return None


# What each backend reads as a model source outside the repository (``spec.source``): why is in docs/models.md.
BLOB_URI = re.compile(r"https://[a-z0-9]{3,24}\.blob\.core\.windows\.net/[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?/[^?#]+")
SOURCE_URIS = {
    "local": "the local backend reads file:// URIs of absolute paths (file:///data/models/model.onnx)",
    "azure": "the Azure backend reads Azure Blob Storage URIs (https://<account>.blob.core.windows.net/<container>/"
             "<blob>) with its Azure credential",
}


def _uri_problem(uri: str, provider: str | None) -> str | None:
    """Why ``provider`` cannot read ``uri``, or None. The URI is not read here (``validate`` reads no backend)."""
    parts = urlsplit(uri)
    if parts.query or "?" in uri:
        return ("a URI with a query string is refused: it may carry a SAS token, a secret that must not be in git; "
                "give the blob's plain URL and grant the reconciler's identity read access (Storage Blob Data Reader)")
    allowed = SOURCE_URIS.get(provider or "")
    if provider == "local":
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return f"not readable here: {allowed}"
        if parts.path.endswith("/"):
            return "names a folder: a URI source is one file (register a folder first and use source.registered)"
    elif provider == "azure":
        if parts.scheme == "azureml":
            return (f"azureml:// datastore URIs are not read: {allowed}; a datastore's blob has such a URL, or "
                    "register the model in the workspace and use source.registered")
        if not BLOB_URI.fullmatch(uri):
            return f"not readable here: {allowed}"
    return None


def _model(item: Located, boundary: Boundary, provider: str | None, folders: Folders) -> list[Diagnostic]:
    spec: ModelSpec = item.spec
    if spec.registered is not None:
        # The reconciler does not own a registered version: what it would set there is refused, not ignored.
        set_here = [(path, name) for path, name in ((("metadata", "description"), "a description"),
                                                   (("metadata", "tags"), "tags"), (("spec", "properties"),
                                                                                    "properties"))
                    if item.document.data.get(path[0], {}).get(path[1])]
        return [_at(item, path, f"{name} cannot be set on a registered version (source.registered): the reconciler "
                                "never changes a version it did not register; set them where it is registered")
                for path, name in set_here]
    if spec.uri is not None:
        problem = _uri_problem(spec.uri.uri, provider)
        return [_at(item, ("spec", "source", "uri"), problem)] if problem else []
    assert spec.path is not None
    problem = _file_problem(spec.path, boundary, want="any")
    if problem is None and spec.path.is_dir():
        entries = folders.entries(spec.path)
        # The folder resolves inside the repository and the walk does not enter linked folders, so only a
        # link can lead out: each one is resolved in full (``..`` and links in its target included).
        escaping = next((entry for entry in entries if entry.is_link and not boundary.contains(entry.path)), None)
        if escaping:
            problem = f"{display_path(Path(escaping.path))} is a link that resolves outside the repository"
        elif not any(entry.is_file for entry in entries):
            problem = f"{display_path(spec.path)} is an empty folder"
    return [_at(item, ("spec", "path"), problem)] if problem else []


class FileChecks:
    """Each entry script, conda file and samples folder checked once per run: many Image specs
    share one."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, Path], list[Problem]] = {}

    def entry_script(self, path: Path) -> list[Problem]:
        return self._once("entry", path, entry_script_problems)

    def conda(self, path: Path) -> list[Problem]:
        return self._once("conda", path, conda_problems)

    def samples(self, path: Path) -> list[Problem]:
        return self._once("samples", path, sample_problems)

    def _once(self, kind: str, path: Path, check: Callable[[Path], list[Problem]]) -> list[Problem]:
        key = (kind, path)
        if key not in self._done:
            self._done[key] = check(path)
        return self._done[key]


def _located(item: Located, path: tuple[str | int, ...], problems: list[Problem]) -> list[Diagnostic]:
    """File problems at their own ``file:line:col`` when they have one (a GitHub annotation then
    lands on that file), else at the spec field."""
    found = []
    for message, location in problems:
        if location is None:
            found.append(_at(item, path, message))
        else:
            found.append(Diagnostic(location, subject_of(item.document.data), dotted(path), message))
    return found


def _image(item: Located, model_names: set[str], boundary: Boundary, file_checks: FileChecks) -> list[Diagnostic]:
    spec: ImageSpec = item.spec
    found = []
    for index, model in enumerate(spec.models):
        if model not in model_names:
            found.append(_at(item, ("spec", "models", index), f"no Model named {model!r} in this environment"))
    if spec.source_directory is not None:
        problem = _file_problem(spec.source_directory, boundary, want="folder")
        if problem:
            return [*found, _at(item, ("spec", "sourceDirectory"), problem)]
    problem = _file_problem(spec.entry_script, boundary, want="file")
    if problem:
        found.append(_at(item, ("spec", "entryScript"), problem))
    else:
        found += _located(item, ("spec", "entryScript"), file_checks.entry_script(spec.entry_script))
    problem = _file_problem(spec.conda_file, boundary, want="file")
    if problem:
        found.append(_at(item, ("spec", "condaFile"), problem))
    else:
        found += _located(item, ("spec", "condaFile"), file_checks.conda(spec.conda_file))
    gates = item.document.data["spec"].get("gates")
    if gates is not None and spec.samples is None:
        found.append(_at(item, ("spec", "gates"), "gates need samples to measure: add spec.samples.path "
                                                  "(a folder of <name>.json request bodies)", key=True))
    if spec.samples is not None:
        problem = _file_problem(spec.samples.path, boundary, want="folder")
        if problem:
            found.append(_at(item, ("spec", "samples", "path"), problem))
        else:
            found += _located(item, ("spec", "samples", "path"), file_checks.samples(spec.samples.path))
    return found


def entry_script_problems(script: Path) -> list[Problem]:
    """A scoring script must define top-level ``init()`` and ``run(input_data)``."""
    try:
        tree = ast.parse(script.read_bytes(), filename=str(script))
    except SyntaxError as exc:
        where = SourceLocation(display_path(script), exc.lineno or 1, exc.offset or 1)
        return [(f"{script.name} is not valid Python: {exc.msg}", where)]
    except ValueError as exc:  # e.g. null bytes
        return [(f"{script.name} is not valid Python: {exc}", None)]
    functions = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    problems = []
    init = functions.get("init")
    if init is None:
        problems.append(f"{script.name} has no top-level init() function (Azure ML calls it once at start-up)")
    elif _required_positional(init) != 0:
        problems.append(f"{script.name}: init() must take no arguments (line {init.lineno})")
    run = functions.get("run")
    if run is None:
        problems.append(f"{script.name} has no top-level run(input_data) function (Azure ML calls it per request)")
    else:
        positional = len(run.args.posonlyargs) + len(run.args.args)
        if positional < 1 and run.args.vararg is None:
            problems.append(f"{script.name}: run() must take one argument, the request data (line {run.lineno})")
        elif _required_positional(run) > 1:
            problems.append(f"{script.name}: run() must take exactly one argument, it requires "
                            f"{_required_positional(run)} (line {run.lineno})")
    return [(problem, None) for problem in problems]


def _required_positional(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    arguments = function.args
    return len(arguments.posonlyargs) + len(arguments.args) - len(arguments.defaults)


def conda_problems(conda_file: Path) -> list[Problem]:
    shown = display_path(conda_file)
    try:
        content = yaml.safe_load(read_text(conda_file, conda_file.name))
    except YamlProblem as problem:  # too large, or not UTF-8
        line, column = problem.location.line, problem.location.column
        where = SourceLocation(shown, line, column) if (line, column) != (1, 1) else None
        return [(f"{conda_file.name}: {problem.message}", where)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = SourceLocation(shown, mark.line + 1, mark.column + 1) if mark else None
        return [(f"{conda_file.name} is not valid YAML: {exc.problem or exc.context}", at)]
    except yaml.YAMLError as exc:
        return [(f"{conda_file.name} is not valid YAML: {exc}", None)]
    if not isinstance(content, dict) or not isinstance(content.get("dependencies"), list):
        return [(f"{conda_file.name} has no 'dependencies' list (a conda environment file needs one)", None)]
    return []


def sample_problems(folder: Path) -> list[Problem]:
    """A samples folder needs at least one ``<name>.json``; every file must be JSON (reported at
    its own line) and every ``<name>.expected.json`` must have its ``<name>.json``."""
    try:
        read_samples(folder)
    except SampleProblems as problems:
        return list(problems.problems)
    return []


def _deployment(item: Located, image_names: set[str], registry_names: set[str] | None) -> list[Diagnostic]:
    """Hub rules the schema cannot express. (Id lengths, device ids and "registry is required
    with an Image module" are schema rules: see schemas/deployment.schema.json.)"""
    spec: DeploymentSpec = item.spec
    found = []
    if spec.target_condition is not None:
        try:
            parse(spec.target_condition)
        except ConditionError as exc:
            found.append(_at(item, ("spec", "targetCondition"), f"{exc} (at character {exc.offset + 1})"))
    for module in spec.modules:
        if not module.image_is_external and module.image not in image_names:
            found.append(_at(item, ("spec", "modules", module.name, "image"),
                             f"no Image named {module.image!r} in this environment (an external image "
                             "needs a full reference such as mcr.microsoft.com/name:tag)"))
        chunks = len(create_options_chunks(module.create_options))
        if chunks > limits.MAX_CREATE_OPTIONS_CHUNKS:
            found.append(_at(item, ("spec", "modules", module.name, "createOptions"),
                             f"serialises to {chunks} chunks of {limits.CREATE_OPTIONS_CHUNK} characters; "
                             f"IoT Edge tooling accepts at most {limits.MAX_CREATE_OPTIONS_CHUNKS} (4 KB)"))
    if spec.rollout is not None:
        found += _rollout(item, spec)
    if spec.registry is not None and registry_names is not None and spec.registry not in registry_names:
        known = ", ".join(sorted(registry_names)) or "none"
        found.append(_at(item, ("spec", "registry"),
                         f"no registry named {spec.registry!r} in environment.yaml (defined: {known})"))
    return found


def _rollout(item: Located, spec: DeploymentSpec) -> list[Diagnostic]:
    assert spec.rollout is not None
    found = []
    seen: set[str] = set()
    for index, ring in enumerate(spec.rollout.rings):
        where = ("spec", "rollout", "rings", index)
        if ring.name in seen:
            found.append(_at(item, (*where, "name"), f"ring {ring.name!r} is named twice; ring names are unique"))
        seen.add(ring.name)
        try:
            parse(ring.target_condition)
        except ConditionError as exc:
            found.append(_at(item, (*where, "targetCondition"), f"{exc} (at character {exc.offset + 1})"))
    for metric in spec.rollout.gates.metrics:
        if metric not in spec.metrics:
            known = ", ".join(sorted(spec.metrics)) or "none"
            found.append(_at(item, ("spec", "rollout", "gates", "metrics", metric),
                             f"no metric named {metric!r} in spec.metrics (defined: {known})", key=True))
    return found
