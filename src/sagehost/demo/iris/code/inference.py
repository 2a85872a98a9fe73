"""Iris species classifier: inference-toolkit handlers for sagehost's demo model.

Pure Python (no numpy), so it runs anywhere sagehost does. ``model.json`` beside ``code/`` holds a
multinomial logistic regression fitted by ``train.py``.

Requests (rows are sepal length, sepal width, petal length, petal width in cm):

- ``application/json`` (also assumed when there is no Content-Type):
  ``{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}``, a bare list of rows, or one row.
- ``text/csv``: one row per line, four numbers each.

Answers: ``application/json`` (the default)
``{"predictions": [{"label": "setosa", "probabilities": {"setosa": 0.97, ...}}]}``, or with
``Accept: text/csv`` one label per line. Bad input answers 400, other content types 415, other
accept types 406 (through the ``status_code`` attribute modelhost and the toolkit honour).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from typing import Any

JSON = "application/json"
CSV = "text/csv"
MODEL_FORMAT = "sagehost-iris-logreg/1"
N_FEATURES = 4


class RequestError(Exception):
    """A client error; ``status_code`` becomes the HTTP status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class IrisModel:
    labels: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[list[float]]
    bias: list[float]

    def probabilities(self, row: list[float]) -> list[float]:
        z = [(v - m) / s for v, m, s in zip(row, self.mean, self.scale, strict=True)]
        logits = [
            sum(w * v for w, v in zip(ws, z, strict=True)) + b
            for ws, b in zip(self.weights, self.bias, strict=True)
        ]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return [e / total for e in exps]


def model_fn(model_dir: str) -> IrisModel:
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        spec = json.load(f)
    if spec.get("format") != MODEL_FORMAT:
        raise ValueError(f"model.json is not a {MODEL_FORMAT} model")
    return IrisModel(spec["labels"], spec["mean"], spec["scale"], spec["weights"], spec["bias"])


def input_fn(input_data: str | bytes, content_type: str | None) -> list[list[float]]:
    kind = (content_type or JSON).partition(";")[0].strip().lower()
    text = input_data.decode("utf-8") if isinstance(input_data, bytes) else input_data
    if kind == JSON:
        try:
            payload: Any = json.loads(text)
        except ValueError as exc:
            raise RequestError(400, f"body is not valid JSON: {exc}") from exc
        if isinstance(payload, dict):
            payload = payload.get("instances")
        if isinstance(payload, list) and payload and not isinstance(payload[0], list):
            payload = [payload]  # a single row
        if not isinstance(payload, list):
            raise RequestError(400, 'send {"instances": [[f1, f2, f3, f4], ...]} or a list of rows')
        return [_row(r) for r in payload]
    if kind == CSV:
        return [_row([_number(v) for v in r]) for r in csv.reader(io.StringIO(text)) if r]
    raise RequestError(415, f"content type {content_type!r} is not supported; use {JSON} or {CSV}")


def predict_fn(rows: list[list[float]], model: IrisModel) -> list[dict[str, Any]]:
    predictions = []
    for row in rows:
        probs = model.probabilities(row)
        best = max(range(len(probs)), key=probs.__getitem__)
        predictions.append(
            {
                "label": model.labels[best],
                "probabilities": dict(zip(model.labels, probs, strict=True)),
            }
        )
    return predictions


def output_fn(prediction: list[dict[str, Any]], accept: str) -> tuple[str, str]:
    for part in accept.split(","):
        kind = part.partition(";")[0].strip().lower()
        if kind in (JSON, "*/*"):
            return json.dumps({"predictions": prediction}), JSON
        if kind == CSV:
            return "".join(f"{p['label']}\n" for p in prediction), CSV
    raise RequestError(406, f"accept type {accept!r} is not supported; use {JSON} or {CSV}")


def _row(value: object) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != N_FEATURES
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise RequestError(400, f"each row must be {N_FEATURES} numbers, got {value!r}")
    return [float(v) for v in value]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RequestError(400, f"not a number in CSV input: {text!r}") from None
