"""Which environment folders a change affects, as a GitHub Actions matrix.

    git diff --name-only BASE HEAD | python .github/scripts/environments.py
    python .github/scripts/environments.py --all --exclude-provider local

Prints one line of JSON: a list of ``{"name": ..., "dir": ..., "provider": ...}``, sorted by
name, for ``strategy.matrix.include``. ``name`` is the folder name (the GitHub environment
and artifact names derive from it), ``dir`` is ``environments/<name>`` and ``provider`` is
``spec.provider`` of its environment.yaml (``unknown`` when the file cannot be read: the
job's ``reconciler validate`` then says why).

Rules: a changed file under ``environments/<name>/`` affects that environment; a changed
file under ``models/`` or ``schemas/`` affects every environment (specs use models by
path, and the schemas decide what is valid). A folder without ``environment.yaml`` is not
an environment, so a deleted environment is not planned. Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ENVIRONMENTS = "environments"
SHARED = ("models/", "schemas/")
# Folder names become GitHub environment, artifact and concurrency-group names.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def all_environments(root: Path) -> list[str]:
    base = root / ENVIRONMENTS
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "environment.yaml").is_file())


def affected(changed: list[str], root: Path) -> list[str]:
    """The environments ``changed`` (repository-relative paths) affects."""
    existing = set(all_environments(root))
    names: set[str] = set()
    for path in (line.strip().strip('"') for line in changed):
        if path.startswith(SHARED):
            return sorted(existing)
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == ENVIRONMENTS and parts[1] in existing:
            names.add(parts[1])
    return sorted(names)


def provider_of(root: Path, name: str) -> str:
    path = root / ENVIRONMENTS / name / "environment.yaml"
    try:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "Environment":
                spec = document.get("spec")
                provider = spec.get("provider") if isinstance(spec, dict) else None
                if isinstance(provider, str) and provider:
                    return provider
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        pass
    return "unknown"


def matrix(names: list[str], root: Path, exclude: list[str]) -> list[dict[str, str]]:
    rows = []
    for name in names:
        if not SAFE_NAME.match(name):
            raise SystemExit(f"environments/{name}: use letters, digits, '.', '_' and '-' in environment folder "
                             "names (they name GitHub environments and artifacts)")
        provider = provider_of(root, name)
        if provider not in exclude:
            rows.append({"name": name, "dir": f"{ENVIRONMENTS}/{name}", "provider": provider})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every environment (do not read changed files)")
    parser.add_argument("--exclude-provider", action="append", default=[], metavar="PROVIDER",
                        help="leave out environments on this provider (repeatable)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: .)")
    args = parser.parse_args(argv)
    names = all_environments(args.root) if args.all else affected(sys.stdin.read().splitlines(), args.root)
    print(json.dumps(matrix(names, args.root, args.exclude_provider), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
