"""The spec cache: parsed files and schema verdicts are reused by content; anything else is done afresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.diff import field_changes
from reconciler.errors import SpecError
from reconciler.spec import loader
from reconciler.spec.cache import SpecCache
from reconciler.spec.loader import load_environment


def test_a_second_load_validates_only_what_changed(sample_env: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    first = load_environment(sample_env)
    [cache_file] = (tmp_path / "cache" / "spec-cache").iterdir()

    validated: list[str] = []
    original = loader.validate_document

    def counting(document):  # type: ignore[no-untyped-def]
        validated.append(document.data["metadata"]["name"])
        return original(document)

    monkeypatch.setattr(loader, "validate_document", counting)
    assert load_environment(sample_env) == first
    assert validated == []  # every document was known to pass

    deployments = sample_env / "deployments.yaml"
    deployments.write_text(deployments.read_text().replace("priority: 10", "priority: high", 1))
    with pytest.raises(SpecError, match="1 problem") as failed:
        load_environment(sample_env)
    assert validated == ["iris-base"]  # only the edited document
    assert "spec.priority" in str(failed.value.diagnostics[0])
    with pytest.raises(SpecError):  # a failing document is never cached: reported again
        load_environment(sample_env)
    assert validated == ["iris-base", "iris-base"]


def test_a_damaged_cache_file_is_ignored(sample_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path))
    load_environment(sample_env)
    [cache_file] = (tmp_path / "spec-cache").iterdir()
    cache_file.write_text("{not json")
    assert load_environment(sample_env).models


def test_equal_values_of_different_json_types_are_still_a_change() -> None:
    """The shortcut for equal sides compares canonical JSON, which keeps types apart as DeepDiff does."""
    assert [c.path for c in field_changes({"priority": 1}, {"priority": 1.0})] == ["priority"]
    assert [c.path for c in field_changes({"enabled": 1}, {"enabled": True})] == ["enabled"]
    assert field_changes({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2]}}) == ()


def test_documents_of_an_unchanged_file_are_known_to_pass_without_serialising_them(
        sample_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cached document carries the digest it passed under; only edited files' documents are hashed."""
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    first = load_environment(sample_env)
    hashed: list[str] = []
    original = SpecCache._document_digest

    def counting(data):  # type: ignore[no-untyped-def]
        hashed.append(data["metadata"]["name"])
        return original(data)

    monkeypatch.setattr(SpecCache, "_document_digest", staticmethod(counting))
    assert load_environment(sample_env) == first
    assert hashed == []
    deployments = sample_env / "deployments.yaml"
    deployments.write_text(deployments.read_text() + "\n# a comment: the file's text changed, its documents did not\n")
    assert load_environment(sample_env) == first
    assert hashed and set(hashed) <= set(first.deployments)  # only the edited file's documents...
    assert len(hashed) == len(set(hashed))  # ...each once
    hashed.clear()
    assert load_environment(sample_env) == first  # the edited file's entry now carries its verdicts too
    assert hashed == []
