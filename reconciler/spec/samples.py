"""Behaviour samples on disk: ``<name>.json`` request bodies and ``<name>.expected.json`` answers.

Read here (the spec stage) so that ``validate`` reports a broken sample at its own line and the
runs get bytes that are known to be JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.model.behaviour import Sample
from reconciler.model.diagnostics import SourceLocation
from reconciler.spec.paths import display_path

EXPECTED = ".expected.json"
MAX_SAMPLE_BYTES = 1_000_000  # a request body; larger ones belong in a load test, not a gate
MAX_SAMPLES = 1000

Problem = tuple[str, "SourceLocation | None"]
"""A file check's finding: the message, and where in the file it is (None: the file or folder as
a whole, reported at the spec field that names it)."""


class SampleProblems(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = tuple(problems)
        super().__init__("; ".join(message for message, _ in problems))


def _parse(path: Path, problems: list[Problem]) -> tuple[bytes, object] | None:
    shown = display_path(path)
    data = path.read_bytes()
    if len(data) > MAX_SAMPLE_BYTES:
        problems.append((f"{path.name} is {len(data):,} bytes; a sample may have at most {MAX_SAMPLE_BYTES:,}",
                         SourceLocation(shown)))
        return None
    try:
        return data, json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problems.append((f"{path.name} is not valid UTF-8 (byte {data[exc.start]:#04x}); save it as UTF-8",
                         SourceLocation(shown)))
    except json.JSONDecodeError as exc:
        problems.append((f"{path.name} is not valid JSON: {exc.msg}", SourceLocation(shown, exc.lineno, exc.colno)))
    return None


def read_samples(folder: Path) -> list[Sample]:
    """The samples of a folder, sorted by name. Raises ``SampleProblems`` with every problem."""
    problems: list[Problem] = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".json")
    requests = [p for p in files if not p.name.endswith(EXPECTED)]
    expected = {p.name[: -len(EXPECTED)]: p for p in files if p.name.endswith(EXPECTED)}
    if not requests:
        problems.append((f"{display_path(folder)} has no <name>.json request bodies", None))
    if len(requests) > MAX_SAMPLES:
        problems.append((f"{display_path(folder)} has {len(requests)} samples; at most {MAX_SAMPLES} are run", None))
    names = {p.stem for p in requests}
    for name, path in sorted(expected.items()):
        if name not in names:
            problems.append((f"{path.name} has no {name}.json request beside it", SourceLocation(display_path(path))))
    samples = []
    for path in requests:
        body = _parse(path, problems)
        answer = _parse(expected[path.stem], problems) if path.stem in expected else None
        if body is not None:
            samples.append(Sample(path.stem, body[0], answer[1] if answer else None, answer is not None))
    if problems:
        raise SampleProblems(problems)
    return samples
