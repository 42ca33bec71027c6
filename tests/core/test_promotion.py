"""Build once, promote (``spec.promoteFrom``): what the loader checks and what the planner refuses.

The plans themselves are golden cases (``tests/cases/plan/image-promot*``); a refused plan has no
expected files, so the refusals are pinned here, whole messages included.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.core import planner
from reconciler.errors import SpecError
from reconciler.model.state import PromotionSource
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.plan_cases import CASES, read_sources
from tests.core.snapshot_json import converged, load_snapshot

CASE = "image-promoted-from-dev"


@pytest.fixture
def case(tmp_path: Path) -> Path:
    """The case copied into a repository of its own: ``<case>/env`` promotes from ``<case>/dev``."""
    (tmp_path / ".git").mkdir()
    shutil.copytree(CASES / "_shared", tmp_path / "cases" / "_shared")
    shutil.copytree(CASES / CASE, tmp_path / "cases" / CASE)
    return tmp_path / "cases" / CASE


def messages(error: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [f"{d.subject}: {d.field}: {d.message}" for d in error.value.diagnostics]


def test_a_promoted_image_has_the_fingerprint_of_its_source(case: Path) -> None:
    prod, dev = load_environment(case / "env"), load_environment(case / "dev")
    assert set(prod.promotions) == {"iris-scorer"} and prod.images == {}
    assert compute_fingerprints(prod, HashCache()).images == compute_fingerprints(dev, HashCache()).images


def test_a_source_that_has_not_built_the_label_refuses_the_plan(case: Path) -> None:
    desired = load_environment(case / "env")
    fingerprints = compute_fingerprints(desired, HashCache())
    snapshot = load_snapshot(case / "actual.json")
    label = planner.image_label(fingerprints.images["iris-scorer"])
    missing = {"iris-scorer": PromotionSource("dev", "iris-scorer", label, None, f"localhost/iris-scorer:{label}")}
    with pytest.raises(SpecError) as refused:
        planner.plan(desired, fingerprints, snapshot, sources=missing)
    assert messages(refused) == [
        f"image/iris-scorer: spec.promoteFrom: environment 'dev' has not built iris-scorer:{label} (the version its "
        f"specs give now), so there is nothing to promote: apply {CASE}/dev first, then plan again; nothing was "
        "applied"]
    with pytest.raises(SpecError):  # no source read at all: the same
        planner.plan(desired, fingerprints, snapshot)
    stale = {"iris-scorer": PromotionSource("dev", "iris-scorer", "0123456789ab", "sha256:" + "0" * 64, "x")}
    with pytest.raises(SpecError):  # a build of another label is not this one
        planner.plan(desired, fingerprints, snapshot, sources=stale)


def test_a_promoted_label_that_is_here_is_unchanged_whatever_the_source_holds(case: Path) -> None:
    desired = load_environment(case / "env")
    fingerprints = compute_fingerprints(desired, HashCache())
    snapshot = converged(desired, fingerprints)
    plan = planner.plan(desired, fingerprints, snapshot)  # dev's build is gone: nothing to promote, nothing needed
    assert plan.changes == () and "image/iris-scorer" in map(str, plan.unchanged)
    sources = read_sources(case / "sources.json")
    assert planner.plan(desired, fingerprints, snapshot, sources=sources).changes == ()


def test_the_digest_moves_the_desired_fingerprint(case: Path) -> None:
    """A saved plan is refused once dev built the label again (another digest)."""
    desired = load_environment(case / "env")
    fingerprints = compute_fingerprints(desired, HashCache())
    snapshot = load_snapshot(case / "actual.json")
    sources = read_sources(case / "sources.json")
    moved = {name: PromotionSource(s.environment, s.image, s.label, "sha256:" + "1" * 64, s.reference)
             for name, s in sources.items()}
    assert (planner.plan(desired, fingerprints, snapshot, sources=sources).desired_fingerprint
            != planner.plan(desired, fingerprints, snapshot, sources=moved).desired_fingerprint)


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_missing_source_environment_is_a_located_error(case: Path) -> None:
    _rewrite(case / "env" / "images.yaml", "environment: dev", "environment: staging")
    with pytest.raises(SpecError) as refused:
        load_environment(case / "env")
    (diagnostic,) = refused.value.diagnostics
    assert diagnostic.location.line == 11 and diagnostic.field == "spec.promoteFrom.environment"
    assert diagnostic.message.startswith("no environment 'staging': ") and diagnostic.message.endswith(
        "staging has no environment.yaml (promoteFrom.environment names a sibling folder of this environment's "
        "folder)")


def test_an_image_the_source_does_not_have(case: Path) -> None:
    _rewrite(case / "env" / "images.yaml", "image: iris-scorer", "image: iris-scorrer")
    with pytest.raises(SpecError) as refused:
        load_environment(case / "env")
    assert messages(refused) == ["Image/iris-scorer: spec.promoteFrom.image: environment 'dev' has no Image named "
                                 "'iris-scorrer' (defined: iris-scorer)"]


def test_promotions_that_go_round_in_a_circle(case: Path) -> None:
    _rewrite(case / "dev" / "images.yaml", "spec:\n", "spec:\n  promoteFrom: {environment: env, image: iris-scorer}\n")
    for field in ("  runtime: python\n", "  sourceDirectory: ../../_shared/scorer\n", "  entryScript: score.py\n",
                  "  condaFile: conda.yaml\n", "  models:\n    - iris-classifier\n"):
        _rewrite(case / "dev" / "images.yaml", field, "")
    with pytest.raises(SpecError) as refused:
        load_environment(case / "env")
    assert "Image/iris-scorer: spec.promoteFrom.environment: environment 'env' promotes from this one: the " \
           "promotions go round in a circle (env -> dev -> env)" in messages(refused)


def test_promote_from_another_provider(case: Path) -> None:
    _rewrite(case / "dev" / "environment.yaml", "provider: local", "provider: azure\n  azure:\n"
             "    subscriptionId: 00000000-0000-0000-0000-000000000000\n    resourceGroup: rg\n    workspace: mlw\n"
             "    iotHub: {hostName: h.azure-devices.net}")
    with pytest.raises(SpecError) as refused:
        load_environment(case / "env")
    assert messages(refused) == ["Image/iris-scorer: spec.promoteFrom.environment: environment 'dev' uses the 'azure' "
                                 "provider and this one 'local': images are promoted between environments of the "
                                 "same provider"]


def test_promote_from_is_given_alone(case: Path) -> None:
    _rewrite(case / "env" / "images.yaml", "  promoteFrom:\n", "  entryScript: score.py\n  promoteFrom:\n")
    with pytest.raises(SpecError) as refused:
        load_environment(case / "env")
    assert messages(refused) == [
        "Image/iris-scorer: spec.entryScript: an image with `promoteFrom` is not built here, it is copied from the "
        "other environment: give `promoteFrom` alone, without runtime, entryScript, condaFile, sourceDirectory, "
        "models, samples or gates"]
