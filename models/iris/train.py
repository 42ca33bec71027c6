"""Train the sample iris classifier with the Python standard library only.

The model is a multinomial logistic (softmax) regression on standardised features, fitted by
full-batch gradient descent with a fixed learning rate, number of epochs and L2 penalty, from
zero weights. Nothing is random, so every run writes the same bytes:

    python models/iris/train.py                      # writes models/iris/model/model.json
    python models/iris/train.py --output-dir /tmp/m  # writes /tmp/m/model.json

Parameters are rounded to 6 decimals before they are written (and the reported accuracy is
computed with the rounded values), so the last-bit differences that ``math.exp`` may have on
other C libraries cannot change the output. ``score.py`` serves the model.

Data: the classic iris data set (Fisher, 1936), 150 rows, as published in the UCI Machine
Learning Repository's ``iris.data`` (whose rows 35 and 38 differ slightly from Fisher's paper).
Columns: sepal length, sepal width, petal length, petal width (cm), species.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

FORMAT = "edge-reconciler/iris-softmax/v1"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
CLASSES = ["setosa", "versicolor", "virginica"]
LEARNING_RATE = 0.5
EPOCHS = 1000
L2 = 0.001
DECIMALS = 6

IRIS_CSV = """\
5.1,3.5,1.4,0.2,setosa
4.9,3.0,1.4,0.2,setosa
4.7,3.2,1.3,0.2,setosa
4.6,3.1,1.5,0.2,setosa
5.0,3.6,1.4,0.2,setosa
5.4,3.9,1.7,0.4,setosa
4.6,3.4,1.4,0.3,setosa
5.0,3.4,1.5,0.2,setosa
4.4,2.9,1.4,0.2,setosa
4.9,3.1,1.5,0.1,setosa
5.4,3.7,1.5,0.2,setosa
4.8,3.4,1.6,0.2,setosa
4.8,3.0,1.4,0.1,setosa
4.3,3.0,1.1,0.1,setosa
5.8,4.0,1.2,0.2,setosa
5.7,4.4,1.5,0.4,setosa
5.4,3.9,1.3,0.4,setosa
5.1,3.5,1.4,0.3,setosa
5.7,3.8,1.7,0.3,setosa
5.1,3.8,1.5,0.3,setosa
5.4,3.4,1.7,0.2,setosa
5.1,3.7,1.5,0.4,setosa
4.6,3.6,1.0,0.2,setosa
5.1,3.3,1.7,0.5,setosa
4.8,3.4,1.9,0.2,setosa
5.0,3.0,1.6,0.2,setosa
5.0,3.4,1.6,0.4,setosa
5.2,3.5,1.5,0.2,setosa
5.2,3.4,1.4,0.2,setosa
4.7,3.2,1.6,0.2,setosa
4.8,3.1,1.6,0.2,setosa
5.4,3.4,1.5,0.4,setosa
5.2,4.1,1.5,0.1,setosa
5.5,4.2,1.4,0.2,setosa
4.9,3.1,1.5,0.1,setosa
5.0,3.2,1.2,0.2,setosa
5.5,3.5,1.3,0.2,setosa
4.9,3.1,1.5,0.1,setosa
4.4,3.0,1.3,0.2,setosa
5.1,3.4,1.5,0.2,setosa
5.0,3.5,1.3,0.3,setosa
4.5,2.3,1.3,0.3,setosa
4.4,3.2,1.3,0.2,setosa
5.0,3.5,1.6,0.6,setosa
5.1,3.8,1.9,0.4,setosa
4.8,3.0,1.4,0.3,setosa
5.1,3.8,1.6,0.2,setosa
4.6,3.2,1.4,0.2,setosa
5.3,3.7,1.5,0.2,setosa
5.0,3.3,1.4,0.2,setosa
7.0,3.2,4.7,1.4,versicolor
6.4,3.2,4.5,1.5,versicolor
6.9,3.1,4.9,1.5,versicolor
5.5,2.3,4.0,1.3,versicolor
6.5,2.8,4.6,1.5,versicolor
5.7,2.8,4.5,1.3,versicolor
6.3,3.3,4.7,1.6,versicolor
4.9,2.4,3.3,1.0,versicolor
6.6,2.9,4.6,1.3,versicolor
5.2,2.7,3.9,1.4,versicolor
5.0,2.0,3.5,1.0,versicolor
5.9,3.0,4.2,1.5,versicolor
6.0,2.2,4.0,1.0,versicolor
6.1,2.9,4.7,1.4,versicolor
5.6,2.9,3.6,1.3,versicolor
6.7,3.1,4.4,1.4,versicolor
5.6,3.0,4.5,1.5,versicolor
5.8,2.7,4.1,1.0,versicolor
6.2,2.2,4.5,1.5,versicolor
5.6,2.5,3.9,1.1,versicolor
5.9,3.2,4.8,1.8,versicolor
6.1,2.8,4.0,1.3,versicolor
6.3,2.5,4.9,1.5,versicolor
6.1,2.8,4.7,1.2,versicolor
6.4,2.9,4.3,1.3,versicolor
6.6,3.0,4.4,1.4,versicolor
6.8,2.8,4.8,1.4,versicolor
6.7,3.0,5.0,1.7,versicolor
6.0,2.9,4.5,1.5,versicolor
5.7,2.6,3.5,1.0,versicolor
5.5,2.4,3.8,1.1,versicolor
5.5,2.4,3.7,1.0,versicolor
5.8,2.7,3.9,1.2,versicolor
6.0,2.7,5.1,1.6,versicolor
5.4,3.0,4.5,1.5,versicolor
6.0,3.4,4.5,1.6,versicolor
6.7,3.1,4.7,1.5,versicolor
6.3,2.3,4.4,1.3,versicolor
5.6,3.0,4.1,1.3,versicolor
5.5,2.5,4.0,1.3,versicolor
5.5,2.6,4.4,1.2,versicolor
6.1,3.0,4.6,1.4,versicolor
5.8,2.6,4.0,1.2,versicolor
5.0,2.3,3.3,1.0,versicolor
5.6,2.7,4.2,1.3,versicolor
5.7,3.0,4.2,1.2,versicolor
5.7,2.9,4.2,1.3,versicolor
6.2,2.9,4.3,1.3,versicolor
5.1,2.5,3.0,1.1,versicolor
5.7,2.8,4.1,1.3,versicolor
6.3,3.3,6.0,2.5,virginica
5.8,2.7,5.1,1.9,virginica
7.1,3.0,5.9,2.1,virginica
6.3,2.9,5.6,1.8,virginica
6.5,3.0,5.8,2.2,virginica
7.6,3.0,6.6,2.1,virginica
4.9,2.5,4.5,1.7,virginica
7.3,2.9,6.3,1.8,virginica
6.7,2.5,5.8,1.8,virginica
7.2,3.6,6.1,2.5,virginica
6.5,3.2,5.1,2.0,virginica
6.4,2.7,5.3,1.9,virginica
6.8,3.0,5.5,2.1,virginica
5.7,2.5,5.0,2.0,virginica
5.8,2.8,5.1,2.4,virginica
6.4,3.2,5.3,2.3,virginica
6.5,3.0,5.5,1.8,virginica
7.7,3.8,6.7,2.2,virginica
7.7,2.6,6.9,2.3,virginica
6.0,2.2,5.0,1.5,virginica
6.9,3.2,5.7,2.3,virginica
5.6,2.8,4.9,2.0,virginica
7.7,2.8,6.7,2.0,virginica
6.3,2.7,4.9,1.8,virginica
6.7,3.3,5.7,2.1,virginica
7.2,3.2,6.0,1.8,virginica
6.2,2.8,4.8,1.8,virginica
6.1,3.0,4.9,1.8,virginica
6.4,2.8,5.6,2.1,virginica
7.2,3.0,5.8,1.6,virginica
7.4,2.8,6.1,1.9,virginica
7.9,3.8,6.4,2.0,virginica
6.4,2.8,5.6,2.2,virginica
6.3,2.8,5.1,1.5,virginica
6.1,2.6,5.6,1.4,virginica
7.7,3.0,6.1,2.3,virginica
6.3,3.4,5.6,2.4,virginica
6.4,3.1,5.5,1.8,virginica
6.0,3.0,4.8,1.8,virginica
6.9,3.1,5.4,2.1,virginica
6.7,3.1,5.6,2.4,virginica
6.9,3.1,5.1,2.3,virginica
5.8,2.7,5.1,1.9,virginica
6.8,3.2,5.9,2.3,virginica
6.7,3.3,5.7,2.5,virginica
6.7,3.0,5.2,2.3,virginica
6.3,2.5,5.0,1.9,virginica
6.5,3.0,5.2,2.0,virginica
6.2,3.4,5.4,2.3,virginica
5.9,3.0,5.1,1.8,virginica
"""


def load_iris() -> tuple[list[list[float]], list[int]]:
    """The embedded data set as (feature rows, class indexes)."""
    rows: list[list[float]] = []
    labels: list[int] = []
    for line in IRIS_CSV.strip().splitlines():
        *values, species = line.split(",")
        rows.append([float(v) for v in values])
        labels.append(CLASSES.index(species))
    return rows, labels


def standardise(rows: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per-feature mean and (population) standard deviation, rounded like the weights."""
    n = len(rows)
    means = [sum(r[j] for r in rows) / n for j in range(len(FEATURES))]
    stds = [math.sqrt(sum((r[j] - means[j]) ** 2 for r in rows) / n) for j in range(len(FEATURES))]
    return [round(m, DECIMALS) for m in means], [round(s, DECIMALS) for s in stds]


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def scores_of(x: list[float], weights: list[list[float]], bias: list[float]) -> list[float]:
    return [sum(w * v for w, v in zip(weights[k], x, strict=True)) + bias[k] for k in range(len(CLASSES))]


def fit(xs: list[list[float]], labels: list[int]) -> tuple[list[list[float]], list[float]]:
    """Full-batch gradient descent on the mean cross-entropy plus an L2 penalty on the weights."""
    n, d, c = len(xs), len(FEATURES), len(CLASSES)
    weights = [[0.0] * d for _ in range(c)]
    bias = [0.0] * c
    for _ in range(EPOCHS):
        grad_w = [[0.0] * d for _ in range(c)]
        grad_b = [0.0] * c
        for x, y in zip(xs, labels, strict=True):
            probabilities = softmax(scores_of(x, weights, bias))
            for k in range(c):
                error = probabilities[k] - (1.0 if k == y else 0.0)
                grad_b[k] += error
                for j in range(d):
                    grad_w[k][j] += error * x[j]
        for k in range(c):
            bias[k] -= LEARNING_RATE * grad_b[k] / n
            for j in range(d):
                weights[k][j] -= LEARNING_RATE * (grad_w[k][j] / n + L2 * weights[k][j])
    return [[round(w, DECIMALS) for w in row] for row in weights], [round(b, DECIMALS) for b in bias]


def predict(row: list[float], model: dict) -> str:
    """The class name the model gives a raw (unstandardised) feature row; mirrors score.py."""
    means, stds = model["standardisation"]["mean"], model["standardisation"]["std"]
    x = [(v - m) / s for v, m, s in zip(row, means, stds, strict=True)]
    scores = scores_of(x, model["weights"], model["bias"])
    return model["classes"][scores.index(max(scores))]


def train() -> dict:
    rows, labels = load_iris()
    means, stds = standardise(rows)
    xs = [[(v - m) / s for v, m, s in zip(row, means, stds, strict=True)] for row in rows]
    weights, bias = fit(xs, labels)
    model = {
        "format": FORMAT,
        "algorithm": "multinomial logistic regression (softmax), full-batch gradient descent",
        "features": FEATURES,
        "classes": CLASSES,
        "standardisation": {"mean": means, "std": stds},
        "weights": weights,
        "bias": bias,
        "hyperparameters": {"learningRate": LEARNING_RATE, "epochs": EPOCHS, "l2": L2, "decimals": DECIMALS},
        "training": {"dataset": "iris (UCI iris.data)", "rows": len(rows)},
    }
    correct = sum(predict(row, model) == CLASSES[y] for row, y in zip(rows, labels, strict=True))
    model["training"]["accuracy"] = round(correct / len(rows), 4)
    return model


def serialise(model: dict) -> bytes:
    return (json.dumps(model, indent=2, sort_keys=True) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "model",
        help="folder to write model.json into (default: the model/ folder next to this script)",
    )
    args = parser.parse_args(argv)
    model = train()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    target = args.output_dir / "model.json"
    target.write_bytes(serialise(model))
    print(f"wrote {target} (training accuracy {model['training']['accuracy']:.2%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
