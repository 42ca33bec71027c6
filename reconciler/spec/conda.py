"""What the behaviour runs need from an image's conda file: its pip packages, the Python it asks
for, and the packages only conda can install (which a virtualenv cannot provide)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from reconciler.errors import ReconcilerError
from reconciler.spec.paths import display_path
from reconciler.spec.yaml_source import YamlProblem, read_text

_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")


@dataclass(frozen=True)
class CondaEnvironment:
    python: str | None  # the version asked for ("3.10"), if any
    pip: tuple[str, ...]  # requirement strings, as written
    conda_only: tuple[str, ...]  # conda dependencies other than python and pip


def read_conda(path: Path) -> CondaEnvironment:
    """Parse a conda file that ``validate`` accepted. Raises ``ReconcilerError`` otherwise."""
    try:
        content = yaml.safe_load(read_text(path, path.name))
    except (YamlProblem, yaml.YAMLError) as exc:
        raise ReconcilerError(f"{display_path(path)}: not a valid conda file ({exc}); "
                              "run `reconciler validate`") from None
    dependencies = content.get("dependencies") if isinstance(content, dict) else None
    if not isinstance(dependencies, list):
        raise ReconcilerError(f"{display_path(path)}: has no 'dependencies' list; run `reconciler validate`")
    python = None
    pip: list[str] = []
    conda_only: list[str] = []
    for entry in dependencies:
        if isinstance(entry, dict) and isinstance(entry.get("pip"), list):
            pip += [str(requirement) for requirement in entry["pip"]]
            continue
        text = str(entry).strip()
        match = _NAME.match(text.split("::")[-1])
        name = match.group(1).lower() if match else text
        if name == "python":
            version = re.search(r"(\d+\.\d+)", text)
            python = version.group(1) if version else None
        elif name != "pip":
            conda_only.append(text)
    return CondaEnvironment(python, tuple(pip), tuple(conda_only))
