"""How simulated devices are shown: tags in one cell, tables with aligned columns."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.model.specs import JSON
from reconciler.model.state import DeviceModules, SimulatedDevice


def format_tags(tags: dict[str, JSON]) -> str:
    if not tags:
        return "(no tags)"
    return ", ".join(f"{key}={value if isinstance(value, str) else json.dumps(value)}"
                     for key, value in sorted(tags.items()))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in (header, *rows))


def device_list(devices: Sequence[SimulatedDevice]) -> str:
    rows = [(d.id, format_tags(d.tags) + ("  [reports failure]" if d.failing else "")) for d in devices]
    return table(("DEVICE", "TAGS"), rows)


def device_modules(view: DeviceModules) -> str:
    lines = [f"Device {view.device.id}" + (" (reports failure)" if view.device.failing else ""),
             f"Tags: {format_tags(view.device.tags)}", ""]
    if not view.modules:
        lines.append("No deployment applies to this device: it runs no modules.")
    else:
        rows = [(name, image, deployment, view.statuses.get(name, ""))
                for name, (deployment, image) in view.modules.items()]
        lines.append(table(("MODULE", "IMAGE", "FROM DEPLOYMENT", "STATUS"), rows))
    return "\n".join(lines)
