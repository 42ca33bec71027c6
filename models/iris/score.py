"""Scoring script for the iris classifier (the entry script of the `iris-scorer` image).

Azure ML's inference server imports this file, calls ``init()`` once, then ``run(body)`` for
every request to ``POST /score``. Standard library only.

Request:  {"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
          (sepal length, sepal width, petal length, petal width, in cm)
Response: ["setosa", "virginica"]

The model (``model.json``, written by ``train.py``) is looked up under ``AZUREML_MODEL_DIR``,
which Azure ML sets to the folder the registered models are mounted in; without it, the
``model/`` folder next to this script is used (handy for local runs and tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MODEL_FILE = "model.json"
FORMAT = "edge-reconciler/iris-softmax/v1"

model: dict[str, Any] | None = None


def _find_model_file(root: Path) -> Path:
    """``root/model.json``, else the first ``model.json`` below ``root`` (Azure ML mounts a
    registered folder under its own name, e.g. ``$AZUREML_MODEL_DIR/model/model.json``)."""
    direct = root / MODEL_FILE
    if direct.is_file():
        return direct
    found = sorted(root.rglob(MODEL_FILE))
    if not found:
        raise FileNotFoundError(f"no {MODEL_FILE} under {root}")
    return found[0]


def init() -> None:
    """Load the model once, when the server starts."""
    global model
    default = Path(__file__).resolve().parent / "model"
    root = Path(os.environ.get("AZUREML_MODEL_DIR") or default)
    loaded = json.loads(_find_model_file(root).read_text(encoding="utf-8"))
    if loaded.get("format") != FORMAT:
        raise ValueError(f"unsupported model format {loaded.get('format')!r}, expected {FORMAT!r}")
    model = loaded


def _rows(input_data: str | bytes | dict[str, Any]) -> list[list[float]]:
    payload = json.loads(input_data) if isinstance(input_data, (str, bytes)) else input_data
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise ValueError(
            'expected a JSON object {"data": [[sepal_length, sepal_width, petal_length, petal_width], ...]}'
        )
    width = len(model["features"]) if model else 4
    rows = []
    for index, row in enumerate(payload["data"]):
        if (
            not isinstance(row, list)
            or len(row) != width
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        ):
            raise ValueError(f"data[{index}]: expected a list of {width} numbers, got {row!r}")
        rows.append([float(v) for v in row])
    return rows


def predict(rows: list[list[float]]) -> list[str]:
    """The predicted class name of each raw feature row."""
    if model is None:
        raise RuntimeError("init() has not been called")
    means = model["standardisation"]["mean"]
    stds = model["standardisation"]["std"]
    names = []
    for row in rows:
        x = [(v - m) / s for v, m, s in zip(row, means, stds, strict=True)]
        scores = [
            sum(w * v for w, v in zip(weights, x, strict=True)) + b
            for weights, b in zip(model["weights"], model["bias"], strict=True)
        ]
        names.append(model["classes"][scores.index(max(scores))])
    return names


def run(input_data: str | bytes | dict[str, Any]) -> list[str]:
    """Score one request: a JSON string ``{"data": [[...4 numbers...], ...]}``; returns class names."""
    return predict(_rows(input_data))
