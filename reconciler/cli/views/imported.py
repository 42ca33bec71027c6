"""What ``reconciler import`` wrote, and what the specs could not carry over."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.spec.importer import ImportedDeployment


def render_text(imported: list[ImportedDeployment], paths: list[Path], environment: Path) -> str:
    if not imported:
        return "No unmanaged deployments in the hub: nothing to import.\n"
    lines = []
    for item, path in zip(imported, paths, strict=True):
        how = "adopted in place" if item.exact else "adopted by replacing it (see below)"
        lines.append(f"deployment {item.deployment_id} -> {path.name} (deployment/{item.name}; {how})")
        for note in item.notes:
            lines.append(f"  note: {note}")
        if item.not_carried:
            lines.append("  not carried over (the specs cannot express it, so the next plan replaces the "
                         "deployment with the spec's content):")
            lines.extend(f"    {line}" for line in item.not_carried)
    hints = [item.registry_hint for item in imported if item.registry_hint]
    if hints:
        lines.append("Add to environment.yaml, under spec.registries:")
        lines.extend(f"  {hint}" for hint in hints)
    exact = sum(item.exact for item in imported)
    lines.append(f"Imported {len(imported)} deployment(s): {exact} adopted in place, {len(imported) - exact} "
                 "replaced, at the next apply. Nothing in the backend was changed.")
    lines.append(f"Next: review the files, then `reconciler plan {environment}`.")
    return "\n".join(lines) + "\n"


def render_json(imported: list[ImportedDeployment], paths: list[Path]) -> str:
    data = [{"id": item.deployment_id, "name": item.name, "file": str(path), "exact": item.exact,
             "notes": list(item.notes), "not_carried_over": list(item.not_carried),
             "registry_hint": item.registry_hint}
            for item, path in zip(imported, paths, strict=True)]
    return json.dumps({"imported": data}, indent=2) + "\n"
