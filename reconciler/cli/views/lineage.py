"""How ``reconciler where`` shows lineage: model version -> images -> deployments -> devices."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from reconciler.model.lineage import ImageLineage, Lineage, Reach


def _subject(lineage: Lineage) -> str:
    if lineage.kind == "model" and lineage.version is None:
        versions = ", ".join(str(v) for _, v in lineage.models)
        return f"model {lineage.name} (version{'s' if len(lineage.models) != 1 else ''} {versions})"
    return f"{lineage.kind} {lineage.name}" + (f":{lineage.version}" if lineage.version else "")


def _packages(image: ImageLineage) -> str:
    if image.models is None:
        return "packages: not recorded by the backend"
    if not image.models:
        return "packages no model"
    return "packages " + ", ".join(f"{name}:{version}" for name, version in sorted(image.models.items()))


def _reach(reach: Reach) -> list[str]:
    traits = [reach.id] + [t for t, on in (("layered", reach.layered), ("rollout candidate", reach.candidate),
                                            ("unmanaged", not reach.managed)) if on]
    module = f"module{'s' if len(reach.modules) > 1 else ''} {', '.join(reach.modules)}"
    lines = [f"    deployment {reach.name} ({', '.join(traits)}), {module}, priority {reach.priority}: "
             f"{reach.devices} device{'s' if reach.devices != 1 else ''}"]
    if reach.device_ids:
        lines += textwrap.wrap(", ".join(reach.device_ids), 100, initial_indent=" " * 6, subsequent_indent=" " * 6,
                               break_on_hyphens=False)
    return lines


def render_text(lineage: Lineage) -> str:
    lines = [f"{_subject(lineage)} in environment {lineage.environment}:"]
    if not lineage.images:
        lines.append("  no built image packages it" if lineage.kind == "model" else "  no image")
    deployments: set[str] = set()
    devices: set[str] = set()
    listed = False
    for image in lineage.images:
        lines.append(f"  image {image.name}:{image.label} ({image.reference}, built {image.created}), "
                     f"{_packages(image)}")
        if not image.deployments:
            lines.append("    no deployment runs it")
        for reach in image.deployments:
            lines += _reach(reach)
            deployments.add(reach.id)
            if reach.device_ids is not None:
                listed = True
                devices.update(reach.device_ids)
    if lineage.unknown:
        lines.append(f"  and {len(lineage.unknown)} other image build(s) whose models the backend does not record "
                     f"(only the build the specs describe now is known): {', '.join(lineage.unknown)}")
    total = f"{len(lineage.images)} image(s), {len(deployments)} deployment(s)"
    if listed:
        total += f", {len(devices)} device(s) in all"
    lines += ["", total + "."]
    return "\n".join(lines) + "\n"


def to_dict(lineage: Lineage) -> dict[str, Any]:
    def reach(r: Reach) -> dict[str, Any]:
        data: dict[str, Any] = {"id": r.id, "name": r.name, "managed": r.managed, "modules": list(r.modules),
                                "targetCondition": r.target_condition, "priority": r.priority,
                                "layered": r.layered, "rolloutCandidate": r.candidate, "devices": r.devices}
        if r.device_ids is not None:
            data["deviceIds"] = list(r.device_ids)
        return data

    return {
        "environment": lineage.environment,
        "query": {"kind": lineage.kind, "name": lineage.name, "version": lineage.version},
        "models": [{"name": name, "version": version} for name, version in lineage.models],
        "images": [{"name": i.name, "label": i.label, "reference": i.reference, "created": i.created,
                    "models": i.models, "deployments": [reach(r) for r in i.deployments]} for i in lineage.images],
        "unrecorded": list(lineage.unknown),
    }


def render_json(lineage: Lineage) -> str:
    return json.dumps(to_dict(lineage), indent=2) + "\n"
