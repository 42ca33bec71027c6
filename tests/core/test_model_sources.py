"""``core.model_sources`` and the fingerprint of a model from a URI: table tests of the pure parts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reconciler.core.model_sources import registered_fingerprints, uri_mismatches
from reconciler.errors import SpecError
from reconciler.model.diagnostics import SourceLocation
from reconciler.model.specs import UriSource
from reconciler.spec.fingerprints import HashCache, tree_digest, uri_fingerprint
from reconciler.spec.loader import load_environment
from tests.core.plan_cases import CASES
from tests.core.snapshot_json import load_snapshot

CASE = CASES / "model-sources-outside-git"


def test_a_uri_model_has_the_fingerprint_of_the_same_file_in_the_repository(tmp_path: Path) -> None:
    """Same name, same bytes: the same fingerprint, so moving weights out of git rebuilds nothing."""
    data = b'{"weights": [1, 2, 3]}'
    (tmp_path / "model.onnx").write_bytes(data)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "model.onnx").write_bytes(data)
    digest = uri_fingerprint("model.onnx", hashlib.sha256(data).hexdigest())
    assert digest == tree_digest(tmp_path / "model.onnx", HashCache())
    assert digest == tree_digest(tmp_path / "folder", HashCache())
    assert digest != uri_fingerprint("other.onnx", hashlib.sha256(data).hexdigest())


def test_the_file_name_comes_from_the_uri() -> None:
    here = SourceLocation("models.yaml", 1, 1)
    digest = "sha256:" + "0" * 64
    assert UriSource("https://a.blob.core.windows.net/c/iris/model%20v2.onnx", digest, here, here).file_name == (
        "model v2.onnx")
    assert UriSource("file:///srv/models/model.json", digest, here, here).file_name == "model.json"


def test_registered_versions_take_the_fingerprint_the_snapshot_reports() -> None:
    desired = load_environment(CASE / "env")
    snapshot = load_snapshot(CASE / "actual.json")
    [pipeline] = [m for m in snapshot.models if m.name == "iris-labels-pipeline"]
    assert registered_fingerprints(desired, snapshot) == {"iris-labels": pipeline.fingerprint}


def test_a_registered_version_that_is_not_there_is_a_located_spec_error() -> None:
    desired = load_environment(CASE / "env")
    snapshot = load_snapshot(CASE / "actual.json")
    gone = snapshot.__class__(**{**snapshot.__dict__, "models": tuple(
        m for m in snapshot.models if m.name != "iris-labels-pipeline")})
    with pytest.raises(SpecError) as raised:
        registered_fingerprints(desired, gone)
    [problem] = raised.value.diagnostics
    assert str(problem).endswith(
        "Model/iris-labels: spec.source.registered: model version iris-labels-pipeline:4 does not exist in the local "
        "state; name a version that is registered there (versions are never reused once deleted)")
    assert (problem.location.line, problem.location.column) == (25, 17)


def test_only_a_digest_that_differs_is_reported_at_the_digest_field() -> None:
    uri, digest = SourceLocation("models.yaml", 7, 10), SourceLocation("models.yaml", 8, 13)
    pinned = UriSource("file:///srv/m.json", "sha256:" + "a" * 64, uri, digest)
    assert uri_mismatches({"m": (pinned, "a" * 64)}) == []
    [problem] = uri_mismatches({"m": (pinned, "b" * 64)})
    assert str(problem) == (
        f"models.yaml:8:13: Model/m: spec.source.digest: the file at file:///srv/m.json has digest sha256:{'b' * 64}, "
        f"not the pinned sha256:{'a' * 64}; if the new file is the one you want, pin its digest (nothing was "
        "registered)")
