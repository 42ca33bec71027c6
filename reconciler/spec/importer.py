"""``reconciler import``: the hub's unmanaged deployments -> Deployment specs (``core.manifest`` inverted).

Each unmanaged deployment becomes one file, ``imported-<name>.yaml``, in the environment folder: a
Deployment spec with ``spec.adopt: <its id>``, so that the next plan takes it over (``core.adoption``).

Everything a spec can say is carried over: modules (image, createOptions as YAML, re-joined from their
``createOptions01..`` chunks, env, restart policy, status, startup order, image pull policy, module twin
desired properties), routes, the edgeAgent and edgeHub settings, the target condition, priority, labels
(as ``metadata.tags``) and metrics (the deployment's own id in a query becomes ``{deploymentId}``);
layered content (``properties.desired.<path>`` keys) becomes ``layered: true``.

**Exactness is checked, not assumed**: the written spec is loaded back through the same code as
``reconciler plan`` (YAML, JSON Schema, ``loader``) and rendered (``core.manifest``); whatever differs
from the live ``modulesContent`` is listed as not carried over, in the output and in the file. Such a
spec is still written (as close as the specs allow), and its adoption is then a visible replace, never
a silent change. A deployment that cannot become a valid spec at all is refused, and nothing is
written.

**Registry credentials are never written.** The spec names a registry of ``environment.yaml``
(``spec.registry``) whose credentials the reconciler fetches at apply time; when none matches the
registry's address, the output says what to declare.

Import only reads the backend (one snapshot) and writes files.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.core import manifest as render
from reconciler.core.diff import field_changes
from reconciler.errors import ReconcilerError
from reconciler.hub import manifest
from reconciler.model.specs import JSON, DesiredState
from reconciler.model.state import LiveDeployment, LiveRegistry, Snapshot
from reconciler.spec.loader import deployment_spec
from reconciler.spec.schemas import validate_document
from reconciler.spec.yaml_source import YamlProblem, load_documents

FILE_PREFIX = "imported-"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9:.+%_#*?!(),=@;'-]{1,128}$")
MAX_NAME_LENGTH = 119
DEFAULT_MIN_DOCKER_VERSION = "v1.25"
MODULE_FIELDS = {"version", "type", "status", "restartPolicy", "settings", "env", "startupOrder", "imagePullPolicy"}


@dataclass(frozen=True)
class ImportedDeployment:
    """One unmanaged deployment as a spec file, and what the spec could not carry over."""

    deployment_id: str
    name: str  # metadata.name of the spec
    file_name: str  # imported-<name>.yaml
    text: str  # the file's content
    notes: tuple[str, ...]  # facts the user must know (credentials left out, ...)
    not_carried: tuple[str, ...]  # content the spec does not reproduce: its adoption is a replace
    registry_hint: str | None = None  # what to add to environment.yaml, when no registry matches

    @property
    def exact(self) -> bool:
        """The spec renders the live content exactly: the next plan adopts it in place."""
        return not self.not_carried


# --- which deployments --------------------------------------------------------------


def select(snapshot: Snapshot, pattern: str | None) -> list[LiveDeployment]:
    """The unmanaged deployments to import: all, or those whose id matches the glob ``pattern``."""
    unmanaged = [d for d in snapshot.deployments if d.owner is None]
    if pattern is None:
        return unmanaged
    chosen = [d for d in unmanaged if fnmatch.fnmatchcase(d.id, pattern)]
    if chosen:
        return chosen
    owned = sorted(d.id for d in snapshot.deployments if d.owner is not None and fnmatch.fnmatchcase(d.id, pattern))
    if owned:
        raise ReconcilerError(f"--id {pattern}: {', '.join(owned)} is managed by edge-reconciler already (it has "
                              "ownership labels); import takes only unmanaged deployments")
    known = ", ".join(sorted(d.id for d in unmanaged)) or "none"
    raise ReconcilerError(f"--id {pattern}: no unmanaged deployment in the hub matches (unmanaged deployments: "
                          f"{known}); nothing was written")


# --- one deployment -> one spec -------------------------------------------------------


def spec_name(deployment_id: str, taken: set[str]) -> str:
    """A valid, unused ``metadata.name`` for a deployment id (lowercase, ``-`` for anything else)."""
    base = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", deployment_id.lower())).strip("-")[:MAX_NAME_LENGTH - 3]
    base = base or "imported"
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    return name


def _as_written(options: Any) -> str:
    return json.dumps(options, separators=(",", ":"), ensure_ascii=False)


class _Converter:
    """Reads one ``modulesContent`` into the ``spec`` of a Deployment document."""

    def __init__(self, live: LiveDeployment, registries: dict[str, LiveRegistry]):
        self.live = live
        self.registries = registries
        self.notes: list[str] = []
        self.key_order_needed = False  # some createOptions keep a key order that is not sorted
        self.registry_hint: str | None = None

    def options(self, settings: Any) -> dict[str, JSON]:
        text = manifest.create_options_text(settings) if isinstance(settings, dict) else ""
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            return {}  # the verification says what this loses
        if not isinstance(value, dict):
            return {}
        if text != manifest.canonical_json(value) and text == _as_written(value):
            self.key_order_needed = True
        return value

    def env(self, definition: dict[str, Any]) -> dict[str, JSON]:
        found = definition.get("env")
        if not isinstance(found, dict):
            return {}
        return {name: entry.get("value") for name, entry in found.items() if isinstance(entry, dict)}

    def module(self, definition: dict[str, Any]) -> dict[str, JSON]:
        settings = definition.get("settings") or {}
        image = manifest.module_image(definition)
        if image and "/" not in image and ":" not in image:
            self.notes.append(f"image {image!r} has no registry and no tag: a spec needs a full reference, so it "
                              f"is written as {image}:latest")
            image = f"{image}:latest"
        module: dict[str, JSON] = {"image": image}
        options = self.options(settings)
        if options:
            module["createOptions"] = options
        if env := self.env(definition):
            module["env"] = env
        if definition.get("restartPolicy", "always") != "always":
            module["restartPolicy"] = definition["restartPolicy"]
        if definition.get("status", "running") != "running":
            module["status"] = definition["status"]
        for field in ("startupOrder", "imagePullPolicy"):
            if field in definition:
                module[field] = definition[field]
        return module

    def registry(self, credentials: dict[str, dict[str, JSON]]) -> str | None:
        """The registry of environment.yaml the content's credentials stand for (matched by address)."""
        if not credentials:
            return None
        key, entry = sorted(credentials.items())[0]
        address = str(entry.get("address", ""))
        username = str(entry.get("username", ""))
        matching = sorted(name for name, registry in self.registries.items()
                          if registry.address.lower() == address.lower())
        if not matching:
            self.registry_hint = (f"{key}: {{...}}   # a registry with address {address} (user {username}); see "
                                  "docs/migrating.md")
            self.notes.append(f"registry credentials for {address} (user {username}) were not written: no registry "
                              "of environment.yaml has that address. Declare it under spec.registries, add "
                              f"`registry: <its name>` to this spec, and run `reconciler validate`")
            return None
        name = key if key in matching else matching[0]
        self.notes.append(f"registry credentials for {address} were not written (no password is ever written to a "
                          f"file): the spec names registry {name!r} of environment.yaml, whose pull credentials "
                          "the reconciler fetches at apply time")
        if name != key:
            self.notes.append(f"the hub names these credentials {key!r}, a spec names them after the registry "
                              f"({name!r}): to adopt in place, name the registry {key!r} in environment.yaml")
        return name

    def base(self, spec: dict[str, Any]) -> None:
        content = self.live.content
        agent = (content.get(manifest.AGENT) or {}).get(manifest.DESIRED) or {}
        hub = (content.get("$edgeHub") or {}).get(manifest.DESIRED) or {}
        runtime = ((agent.get("runtime") or {}).get("settings")) or {}
        system = agent.get("systemModules") or {}
        edge_agent: dict[str, JSON] = {}
        edge_hub: dict[str, JSON] = {}
        if agent.get("schemaVersion", render.SCHEMA_VERSION) != render.SCHEMA_VERSION:
            edge_agent["schemaVersion"] = agent["schemaVersion"]
        agent_module = system.get("edgeAgent") or {}
        if (image := manifest.module_image(agent_module)) and image != render.EDGE_AGENT_IMAGE:
            edge_agent["image"] = image
        if options := self.options(agent_module.get("settings")):
            edge_agent["createOptions"] = options
        if env := self.env(agent_module):
            edge_agent["env"] = env
        if runtime.get("minDockerVersion", DEFAULT_MIN_DOCKER_VERSION) != DEFAULT_MIN_DOCKER_VERSION:
            edge_agent["minDockerVersion"] = runtime["minDockerVersion"]
        if runtime.get("loggingOptions", ""):
            edge_agent["loggingOptions"] = runtime["loggingOptions"]
        if hub.get("schemaVersion", render.SCHEMA_VERSION) != render.SCHEMA_VERSION:
            edge_hub["schemaVersion"] = hub["schemaVersion"]
        hub_module = system.get("edgeHub") or {}
        if (image := manifest.module_image(hub_module)) and image != render.EDGE_HUB_IMAGE:
            edge_hub["image"] = image
        options = self.options(hub_module.get("settings"))
        if _as_written(options) != _as_written(render.EDGE_HUB_CREATE_OPTIONS):
            edge_hub["createOptions"] = options
        if env := self.env(hub_module):
            edge_hub["env"] = env
        ttl = (hub.get("storeAndForwardConfiguration") or {}).get("timeToLiveSecs")
        if isinstance(ttl, int) and ttl != render.DEFAULT_STORE_AND_FORWARD_SECONDS:
            edge_hub["storeAndForwardTimeToLiveSecs"] = ttl
        spec["modules"] = {name: self.module(d) for name, d in sorted(manifest.modules(content).items())}
        if routes := hub.get("routes"):
            spec["routes"] = dict(routes)
        if edge_agent:
            spec["edgeAgent"] = edge_agent
        if edge_hub:
            spec["edgeHub"] = edge_hub

    def layered(self, spec: dict[str, Any]) -> None:
        content = self.live.content
        spec["layered"] = True
        spec["modules"] = {name: self.module(d) for name, d in sorted(manifest.modules(content).items())}
        prefix = f"{manifest.DESIRED}.routes."
        hub = content.get("$edgeHub") or {}
        routes = {key[len(prefix):]: value for key, value in hub.items() if key.startswith(prefix)}
        if routes:
            spec["routes"] = routes

    def document(self, name: str) -> dict[str, JSON]:
        live = self.live
        spec: dict[str, Any] = {"adopt": live.id, "targetCondition": live.target_condition,
                                "priority": live.priority}
        if live.layered:
            self.layered(spec)
        else:
            self.base(spec)
        twins = {module: value[manifest.DESIRED] for module, value in live.content.items()
                 if module in spec["modules"] and isinstance(value, dict)
                 and isinstance(value.get(manifest.DESIRED), dict)}
        for module, properties in twins.items():
            spec["modules"][module]["desiredProperties"] = properties
        registry = self.registry(manifest.registry_credentials(live.content))
        ordered: dict[str, Any] = {key: spec[key] for key in ("adopt", "targetCondition", "priority", "layered")
                                   if key in spec}
        if registry:
            ordered["registry"] = registry
        if self.key_order_needed:
            ordered["createOptionsKeyOrder"] = "asWritten"
        ordered.update({key: value for key, value in spec.items() if key not in ordered})
        metrics = {metric: query.replace(live.id, render.DEPLOYMENT_ID_PLACEHOLDER)
                   for metric, query in sorted(live.metrics.items())}
        if metrics:
            ordered["metrics"] = metrics
        metadata: dict[str, JSON] = {"name": name,
                                     "description": f"Imported from IoT Hub deployment {live.id}"}
        tags = {key: value for key, value in sorted(live.labels.items())
                if LABEL_PATTERN.match(key) and LABEL_PATTERN.match(value)}
        for key in sorted(set(live.labels) - set(tags)):
            self.notes.append(f"label {key}={live.labels[key]!r} is not a valid spec tag and was left out: the "
                              "adoption removes it from the deployment")
        if tags:
            metadata["tags"] = tags
        return {"apiVersion": "reconciler/v1", "kind": "Deployment", "metadata": metadata, "spec": ordered}


def _short(value: JSON, limit: int = 70) -> str:
    text = manifest.canonical_json(value) if value is not None else "absent"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(document: dict[str, JSON], deployment_id: str, schema_reference: str | None, notes: list[str],
          not_carried: list[str]) -> str:
    lines = [f"# yaml-language-server: $schema={schema_reference}"] if schema_reference else []
    lines.append(f"# Imported by `reconciler import` from the IoT Hub deployment {deployment_id}.")
    lines.append("# `adopt` makes the next plan take it over: in place when this spec renders its content exactly.")
    if not_carried:
        lines.append("# NOT CARRIED OVER (the specs cannot express it; adopting replaces the deployment):")
        lines.extend(f"#   {line}" for line in not_carried)
    lines.extend(f"# Note: {note}" for note in notes)
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return "\n".join(lines) + "\n" + body


def convert(live: LiveDeployment, name: str, registries: dict[str, LiveRegistry], directory: Path,
            schema_reference: str | None = None) -> ImportedDeployment:
    """One unmanaged deployment as a spec file, checked by rendering it back. Raises ``ReconcilerError``
    when it cannot be written as a valid spec at all."""
    converter = _Converter(live, registries)
    document = converter.document(name)
    file_name = f"{FILE_PREFIX}{name}.yaml"
    first = _text(document, live.id, schema_reference, converter.notes, [])
    try:
        parsed = next(load_documents(directory / file_name, file_name, first))
    except YamlProblem as problem:  # pragma: no cover - safe_dump writes what safe_load reads
        raise ReconcilerError(f"deployment {live.id}: the spec written for it does not load: {problem}") from problem
    problems = validate_document(parsed)
    if problems:
        shown = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems[:5])
        raise ReconcilerError(f"deployment {live.id} cannot be written as a valid Deployment spec ({shown}); "
                              "nothing was written. Leave it out with --id, or fix it in the hub first")
    spec = deployment_spec(parsed)
    registry = registries.get(spec.registry) if spec.registry else None
    rendered = render.render(spec, {}, registry)
    differences = field_changes(live.content, rendered, prefix="content.")
    not_carried = [f"{change.path}: the hub has {_short(change.before)}, the spec renders {_short(change.after)}"
                   for change in differences]
    text = _text(document, live.id, schema_reference, converter.notes, not_carried) if not_carried else first
    return ImportedDeployment(live.id, name, file_name, text, tuple(converter.notes), tuple(not_carried),
                              converter.registry_hint)


def import_deployments(desired: DesiredState, snapshot: Snapshot, pattern: str | None) -> list[ImportedDeployment]:
    """Specs for the unmanaged deployments of ``snapshot`` (all, or those matching ``pattern``). A deployment
    some spec of the environment adopts already keeps that spec's name (and file, with ``--force``)."""
    environment = desired.environment
    schemas = environment.repository_root / "schemas"
    reference = None
    if schemas.is_dir():
        reference = Path(*[".."] * len(environment.directory.relative_to(environment.repository_root).parts),
                         "schemas", "deployment.schema.json").as_posix()
    adopting = {spec.adopt: name for name, spec in desired.deployments.items() if spec.adopt}
    taken = set(desired.deployments) - set(adopting.values())
    imported = []
    for live in sorted(select(snapshot, pattern), key=lambda d: d.id):
        name = adopting.get(live.id) or spec_name(live.id, taken)
        taken.add(name)
        imported.append(convert(live, name, snapshot.registries, environment.directory, reference))
    return imported


def write(imported: list[ImportedDeployment], directory: Path, *, force: bool) -> list[Path]:
    """Write the files, all or none: refuses (before writing anything) a file that exists, unless ``force``.
    Returns the paths written; ``restore`` undoes it."""
    paths = [directory / item.file_name for item in imported]
    existing = [path for path in paths if path.exists()]
    if existing and not force:
        shown = ", ".join(path.name for path in existing)
        raise ReconcilerError(f"{shown} exists already in {directory}; nothing was written. Pass --force to "
                              "overwrite, or choose deployments with --id")
    for path, item in zip(paths, imported, strict=True):
        path.write_text(item.text, encoding="utf-8")
    return paths


def snapshot_files(paths: list[Path]) -> dict[Path, str | None]:
    """What the files hold before a write (None: absent), for ``restore``."""
    return {path: path.read_text(encoding="utf-8") if path.exists() else None for path in paths}


def restore(before: dict[Path, str | None]) -> None:
    for path, text in before.items():
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text, encoding="utf-8")
