"""The pure lineage join: model version -> images -> deployments (``reconciler where``)."""

from __future__ import annotations

import pytest

from reconciler.core.lineage import parse_target, running, trace_image, trace_model
from reconciler.errors import ReconcilerError
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion, RolloutMark, Snapshot


def model(version: int) -> ModelVersion:
    return ModelVersion("iris", version, f"f{version}", "", {}, {}, "dev")


def image(label: str, created: str) -> ImageVersion:
    return ImageVersion("scorer", label, None, f"acr.io/scorer:{label}", "dev", created)


def deployment(id_: str, modules: dict[str, str], *, layered: bool = False, owner: str | None = "dev",
               candidate: bool = False) -> LiveDeployment:
    definitions = {name: {"settings": {"image": reference}} for name, reference in modules.items()}
    if layered:
        content = {"$edgeAgent": {f"properties.desired.modules.{n}": d for n, d in definitions.items()}}
    else:
        content = {"$edgeAgent": {"properties.desired": {"modules": definitions}}}
    return LiveDeployment(id_, id_.rsplit("-", 1)[0] if owner else id_, owner, None, content, "tags.a='b'", 10, {},
                          {}, layered, "2026-11-28T00:00:00Z",
                          rollout=RolloutMark(ring="canary", since="x") if candidate else RolloutMark())


SNAPSHOT = Snapshot(
    "dev", "acr.io", (model(1), model(2)),
    (image("aaa", "2026-11-01"), image("bbb", "2026-11-02"), image("ccc", "2026-11-03")),
    (deployment("base-1", {"scorer": "acr.io/scorer:bbb", "sidecar": "mcr.microsoft.com/x:1"}),
     deployment("layer-1", {"extra": "acr.io/scorer:bbb"}, layered=True),
     deployment("candidate-2", {"scorer": "acr.io/scorer:ccc"}, candidate=True),
     deployment("hand-made", {"scorer": "acr.io/scorer:bbbb"}, owner=None)),
    {})
PACKAGED = {("scorer", "aaa"): {"iris": 1}, ("scorer", "bbb"): {"iris": 2}, ("scorer", "ccc"): {"iris": 2}}


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("model", "iris", ("iris", None)), ("model", "iris:12", ("iris", "12")),
    ("image", "scorer:3f2a9c1d0b7e", ("scorer", "3f2a9c1d0b7e")), ("image", "scorer", ("scorer", None)),
])
def test_parse_target(kind: str, text: str, expected: tuple[str, str | None]) -> None:
    assert parse_target(kind, text) == expected


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("model", "iris:", "expected MODEL_NAME or NAME:VERSION, got 'iris:'"),
    ("model", ":2", "expected MODEL_NAME or NAME:VERSION, got ':2'"),
    ("model", "iris:v2", "a model version is a number: 'iris:v2'"),
    ("image", "scorer:", "expected IMAGE_NAME or NAME:LABEL, got 'scorer:'"),
])
def test_parse_target_refuses(kind: str, text: str, message: str) -> None:
    with pytest.raises(ReconcilerError) as error:
        parse_target(kind, text)
    assert str(error.value) == message


def test_a_deployment_runs_an_image_when_a_module_names_its_exact_reference() -> None:
    reaches = running(image("bbb", ""), SNAPSHOT.deployments)
    assert [(r.id, r.modules, r.layered, r.managed) for r in reaches] == [
        ("base-1", ("scorer",), False, True), ("layer-1", ("extra",), True, True)]  # not "scorer:bbbb"
    assert [(r.id, r.candidate) for r in running(image("ccc", ""), SNAPSHOT.deployments)] == [("candidate-2", True)]


def test_trace_model_version_newest_build_first() -> None:
    found = trace_model(SNAPSHOT, PACKAGED, "iris", 2)
    assert found.models == (("iris", 2),)
    assert [(i.label, [r.id for r in i.deployments]) for i in found.images] == [
        ("ccc", ["candidate-2"]), ("bbb", ["base-1", "layer-1"])]
    every = trace_model(SNAPSHOT, PACKAGED, "iris", None)
    assert every.models == (("iris", 1), ("iris", 2)) and [i.label for i in every.images] == ["ccc", "bbb", "aaa"]


def test_images_whose_contents_are_not_recorded_are_listed_as_unknown_when_their_spec_uses_the_model() -> None:
    known = {("scorer", "ccc"): {"iris": 2}}  # Azure: only the build the specs describe now
    found = trace_model(SNAPSHOT, known, "iris", 2, frozenset({"scorer"}))
    assert [i.label for i in found.images] == ["ccc"]
    assert found.unknown == ("acr.io/scorer:bbb", "acr.io/scorer:aaa")
    assert trace_model(SNAPSHOT, known, "iris", 2).unknown == ()  # no spec uses it: not a candidate


def test_what_is_not_there() -> None:
    with pytest.raises(ReconcilerError, match=r"^model iris:3: no such version in environment dev \(versions: 1, 2\)$"):
        trace_model(SNAPSHOT, PACKAGED, "iris", 3)
    with pytest.raises(ReconcilerError, match=r"^model other: no version of it in environment dev$"):
        trace_model(SNAPSHOT, PACKAGED, "other", None)
    labels = r"\(labels: aaa, bbb, ccc\)"
    with pytest.raises(ReconcilerError, match=rf"^image scorer:zzz: not built in environment dev {labels}$"):
        trace_image(SNAPSHOT, PACKAGED, "scorer", "zzz")
    assert [i.models for i in trace_image(SNAPSHOT, {}, "scorer", "aaa").images] == [None]
