"""Demo models shipped with sagehost, ready to serve with no download.

``iris/`` is a model directory in the inference-toolkit layout: ``model.json`` (a multinomial
logistic regression over Fisher's iris data, fitted by ``iris/train.py`` from ``iris/iris.csv``)
and ``code/inference.py`` (pure-Python handlers). Point ``SAGEHOST_MODEL_DIR`` at it, or use it
as a model's ``ModelDataUrl`` directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["iris_model_dir"]


def iris_model_dir() -> Path:
    """The directory of the iris demo model (inside the installed package)."""
    return Path(__file__).resolve().parent / "iris"
