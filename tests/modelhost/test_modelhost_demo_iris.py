"""The bundled iris demo model, served by a real modelhost process."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from modelhost_helpers import Host, Launcher

from sagehost.demo import iris_model_dir

IRIS = iris_model_dir()
# (row number in Fisher's table, features, species): one clear case per species and two of the
# versicolor/virginica borderline rows the model gets right.
KNOWN = [
    (1, [5.1, 3.5, 1.4, 0.2], "setosa"),
    (51, [7.0, 3.2, 4.7, 1.4], "versicolor"),
    (101, [6.3, 3.3, 6.0, 2.5], "virginica"),
    (79, [6.0, 2.9, 4.5, 1.5], "versicolor"),
    (150, [5.9, 3.0, 5.1, 1.8], "virginica"),
]


@pytest.fixture(scope="module")
def host(module_launcher: Launcher) -> Host:
    return module_launcher.start(IRIS)


def test_json_instances(host: Host) -> None:
    body = json.dumps({"instances": [row for _, row, _ in KNOWN]})
    reply = host.invoke(body, {"Content-Type": "application/json"})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    predictions = json.loads(reply.body)["predictions"]
    assert [p["label"] for p in predictions] == [label for _, _, label in KNOWN]
    for p in predictions:
        probs = p["probabilities"]
        assert list(probs) == ["setosa", "versicolor", "virginica"]
        assert sum(probs.values()) == pytest.approx(1.0)
        assert probs[p["label"]] == max(probs.values())
    assert predictions[0]["probabilities"]["setosa"] > 0.95


def test_bare_list_and_single_row(host: Host) -> None:
    rows = json.dumps([KNOWN[2][1], KNOWN[0][1]])
    labels = [p["label"] for p in json.loads(host.invoke(rows).body)["predictions"]]
    assert labels == ["virginica", "setosa"]
    single = json.loads(host.invoke(json.dumps(KNOWN[1][1])).body)["predictions"]
    assert [p["label"] for p in single] == ["versicolor"]


def test_csv_in_csv_out(host: Host) -> None:
    body = "".join(",".join(map(str, row)) + "\n" for _, row, _ in KNOWN)
    reply = host.invoke(body, {"Content-Type": "text/csv", "Accept": "text/csv"})
    assert (reply.status, reply.headers["content-type"]) == (200, "text/csv")
    assert reply.text == "".join(f"{label}\n" for _, _, label in KNOWN)


def test_bad_rows_and_types(host: Host) -> None:
    reply = host.invoke('{"instances": [[1, 2, 3]]}', {"Content-Type": "application/json"})
    assert (reply.status, reply.text) == (400, "each row must be 4 numbers, got [1, 2, 3]")
    assert host.invoke("x", {"Content-Type": "image/png"}).status == 415
    assert host.invoke("[[1,2,3,4]]", {"Accept": "image/png"}).status == 406


def test_whole_table_accuracy(host: Host) -> None:
    with (IRIS / "iris.csv").open() as f:
        table = list(csv.DictReader(f))
    body = "".join(
        f"{r['sepal_length']},{r['sepal_width']},{r['petal_length']},{r['petal_width']}\n"
        for r in table
    )
    reply = host.invoke(body, {"Content-Type": "text/csv", "Accept": "text/csv"})
    predicted = reply.text.splitlines()
    assert len(table) == 150
    assert sum(p == r["species"] for p, r in zip(predicted, table, strict=True)) == 146


def test_training_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    result = subprocess.run(
        [sys.executable, str(IRIS / "train.py"), "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.startswith("training accuracy 146/150")
    assert json.loads(out.read_text()) == json.loads((IRIS / "model.json").read_text())
