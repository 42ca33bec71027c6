"""The sample iris model: training is reproducible and the scoring script predicts correctly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

IRIS = Path(__file__).resolve().parents[2] / "models" / "iris"
COMMITTED = IRIS / "model" / "model.json"


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def score(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    return load_module("iris_score_under_test", IRIS / "score.py")


def test_training_reproduces_the_committed_model_byte_for_byte(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(IRIS / "train.py"), "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "model.json").read_bytes() == COMMITTED.read_bytes()


def test_committed_model_is_a_sensible_classifier() -> None:
    model = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert model["format"] == "edge-reconciler/iris-softmax/v1"
    assert model["classes"] == ["setosa", "versicolor", "virginica"]
    assert len(model["features"]) == 4
    assert len(model["weights"]) == 3 and all(len(row) == 4 for row in model["weights"])
    assert model["training"]["rows"] == 150
    assert model["training"]["accuracy"] >= 0.95


def test_embedded_data_set_is_the_classic_iris() -> None:
    train = load_module("iris_train_under_test", IRIS / "train.py")
    rows, labels = train.load_iris()
    assert len(rows) == 150
    assert [labels.count(k) for k in range(3)] == [50, 50, 50]
    assert rows[0] == [5.1, 3.5, 1.4, 0.2] and labels[0] == 0
    assert rows[149] == [5.9, 3.0, 5.1, 1.8] and labels[149] == 2


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([5.1, 3.5, 1.4, 0.2], "setosa"),  # row 1
        ([4.6, 3.1, 1.5, 0.2], "setosa"),  # row 4
        ([7.0, 3.2, 4.7, 1.4], "versicolor"),  # row 51
        ([5.7, 2.8, 4.1, 1.3], "versicolor"),  # row 100
        ([6.3, 3.3, 6.0, 2.5], "virginica"),  # row 101
        ([6.7, 3.0, 5.2, 2.3], "virginica"),  # row 146
    ],
)
def test_score_predicts_known_rows(score: ModuleType, row: list[float], expected: str) -> None:
    score.init()
    assert score.run(json.dumps({"data": [row]})) == [expected]


def test_score_handles_a_batch_and_matches_the_reported_accuracy(score: ModuleType) -> None:
    train = load_module("iris_train_for_batch", IRIS / "train.py")
    rows, labels = train.load_iris()
    score.init()
    predicted = score.run(json.dumps({"data": rows}))
    assert len(predicted) == 150
    correct = sum(p == train.CLASSES[y] for p, y in zip(predicted, labels, strict=True))
    model = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert round(correct / 150, 4) == model["training"]["accuracy"]


def test_score_finds_the_model_under_azureml_model_dir(
    score: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Azure ML mounts a registered folder under its own name: $AZUREML_MODEL_DIR/model/model.json.
    mounted = tmp_path / "azureml-models" / "iris-classifier" / "1"
    (mounted / "model").mkdir(parents=True)
    (mounted / "model" / "model.json").write_bytes(COMMITTED.read_bytes())
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(mounted))
    score.init()
    assert score.run('{"data": [[5.1, 3.5, 1.4, 0.2]]}') == ["setosa"]

    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        score.init()


@pytest.mark.parametrize(
    "body",
    [
        '{"rows": [[5.1, 3.5, 1.4, 0.2]]}',  # wrong key
        '{"data": [[5.1, 3.5, 1.4]]}',  # three features
        '{"data": [["a", 3.5, 1.4, 0.2]]}',  # not a number
        "[]",  # not an object
    ],
)
def test_score_rejects_malformed_input(score: ModuleType, body: str) -> None:
    score.init()
    with pytest.raises(ValueError):
        score.run(body)
