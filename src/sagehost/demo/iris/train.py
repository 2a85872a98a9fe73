"""Fit the demo iris classifier and write ``model.json`` (not imported at run time).

Usage: ``python src/sagehost/demo/iris/train.py [--output PATH]``

The data is Fisher's 150-row iris table (``iris.csv`` beside this file, in the corrected form R
and scikit-learn ship: rows 35 and 38 as in Fisher's 1936 paper). The model is a multinomial
logistic regression on standardised features, minimising

    sum of cross-entropies + L2/2 * |W|^2 + BIAS_L2/2 * |b|^2

with Newton's method. The tiny bias penalty only pins the one direction softmax cannot see
(adding a constant to every bias). Pure Python, so the weights are reproducible with no
third-party package; the output is rounded to 8 decimals so it is stable across platforms.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABELS = ["setosa", "versicolor", "virginica"]
L2 = 1.0
BIAS_L2 = 1e-6
FORMAT = "sagehost-iris-logreg/1"

Matrix = list[list[float]]


def load_rows(path: Path) -> tuple[Matrix, list[int]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [(list(map(float, (r[name] for name in FEATURES))), r["species"]) for r in reader]
    return [x for x, _ in rows], [LABELS.index(y) for _, y in rows]


def standardise(x: Matrix) -> tuple[list[float], list[float], Matrix]:
    n = len(x)
    mean = [sum(col) / n for col in zip(*x, strict=True)]
    scale = [
        math.sqrt(sum((v - m) ** 2 for v in col) / n)
        for col, m in zip(zip(*x, strict=True), mean, strict=True)
    ]
    z = [[(v - m) / s for v, m, s in zip(row, mean, scale, strict=True)] for row in x]
    return mean, scale, z


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def fit(z: Matrix, y: list[int]) -> Matrix:
    """Rows of ``theta`` are classes: 4 weights then the bias."""
    k, d = len(LABELS), len(FEATURES) + 1
    size = k * d
    theta = [[0.0] * d for _ in range(k)]
    penalty = [L2] * (d - 1) + [BIAS_L2]
    for _ in range(100):
        grad = [penalty[j] * theta[c][j] for c in range(k) for j in range(d)]
        hess = [[0.0] * size for _ in range(size)]
        for row, label in zip(z, y, strict=True):
            xt = [*row, 1.0]
            p = softmax([sum(w * v for w, v in zip(theta[c], xt, strict=True)) for c in range(k)])
            for c in range(k):
                err = p[c] - (1.0 if c == label else 0.0)
                for j in range(d):
                    grad[c * d + j] += err * xt[j]
                for c2 in range(k):
                    weight = p[c] * ((1.0 if c == c2 else 0.0) - p[c2])
                    for j in range(d):
                        for j2 in range(d):
                            hess[c * d + j][c2 * d + j2] += weight * xt[j] * xt[j2]
        for i in range(size):
            hess[i][i] += penalty[i % d]
        step = solve(hess, grad)
        theta = [[theta[c][j] - step[c * d + j] for j in range(d)] for c in range(k)]
        if max(abs(g) for g in grad) < 1e-12:
            break
    return theta


def solve(a: Matrix, b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the Hessian is positive definite)."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
    return out


def train(data: Path) -> dict[str, object]:
    x, y = load_rows(data)
    mean, scale, z = standardise(x)
    theta = fit(z, y)
    weights = [[round(w, 8) for w in row[:-1]] for row in theta]
    bias = [round(row[-1], 8) for row in theta]
    mean, scale = [round(v, 8) for v in mean], [round(v, 8) for v in scale]
    # Accuracy as the served model computes it: from the rounded numbers.
    correct = 0
    for row, label in zip(x, y, strict=True):
        zs = [(v - m) / s for v, m, s in zip(row, mean, scale, strict=True)]
        logits = [
            sum(w * v for w, v in zip(ws, zs, strict=True)) + b
            for ws, b in zip(weights, bias, strict=True)
        ]
        correct += logits.index(max(logits)) == label
    return {
        "format": FORMAT,
        "features": FEATURES,
        "labels": LABELS,
        "mean": mean,
        "scale": scale,
        "weights": weights,
        "bias": bias,
        "training": {"rows": len(y), "correct": correct, "l2": L2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=HERE / "iris.csv")
    parser.add_argument("--output", type=Path, default=HERE / "model.json")
    args = parser.parse_args()
    model = train(args.data)
    args.output.write_text(json.dumps(model, indent=2) + "\n")
    stats = model["training"]
    assert isinstance(stats, dict)
    print(f"training accuracy {stats['correct']}/{stats['rows']} -> {args.output}")


if __name__ == "__main__":
    main()
