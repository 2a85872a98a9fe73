"""Default handler functions, used where the handler module defines none (§9).

They behave like the inference toolkit's defaults. numpy is not a dependency of sagehost, so the
codecs come in two flavours, chosen once when the model loads:

- numpy importable: exactly the toolkit's types. JSON decodes to ``np.array(json.loads(body))``,
  CSV to ``np.genfromtxt(body, dtype=None, delimiter=",")``, ``application/x-npy`` through
  ``np.load`` and ``application/x-npz`` to a scipy sparse matrix (scipy required);
  predictions encode with ``.tolist()`` for JSON, ``np.savetxt(fmt="%s")`` for CSV and ``np.save``.
- numpy missing: plain Python. JSON decodes to whatever ``json.loads`` gives; CSV to a list of
  rows (always a list of lists, even for one row), each field a float where ``float()`` accepts it
  and the string otherwise (blank lines skipped). Encoding writes 2-D lists as rows and flat lists
  one value per line, as ``np.savetxt`` does. npy/npz need numpy: decoding answers 415 and
  ``application/x-npy`` is not offered in Accept negotiation.

Content types are compared without their parameters (``application/json; charset=utf-8`` is
JSON); the toolkit compares the raw header and would reject it.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from types import ModuleType
from typing import Any

from sagehost.modelhost.errors import (
    BadRequestError,
    NotAcceptableError,
    UnsupportedFormatError,
)

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
ANY = "*/*"
#: Bodies of these types reach input_fn/transform_fn as ``str``; every other body as ``bytes``.
UTF8_TYPES = frozenset({JSON, CSV})


def media_type(content_type: str) -> str:
    """``"Text/CSV; charset=utf-8"`` -> ``"text/csv"``."""
    return content_type.partition(";")[0].strip().lower()


def optional_numpy() -> ModuleType | None:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


def default_model_fn(model_dir: str) -> Any:
    raise NotImplementedError(
        "the handler module defines no model_fn; define model_fn(model_dir) to load the model"
    )


def default_predict_fn(data: Any, model: Any) -> Any:
    raise NotImplementedError(
        "the handler module defines no predict_fn; define predict_fn(data, model) or transform_fn"
    )


class Codecs:
    """The default input_fn/output_fn, bound to numpy or to plain Python."""

    def __init__(self, numpy: ModuleType | None, default_accept: str) -> None:
        self.np = numpy
        self.default_accept = default_accept
        self.encodable = (JSON, CSV, NPY) if numpy is not None else (JSON, CSV)

    def input_fn(self, input_data: str | bytes, content_type: str | None) -> Any:
        kind = media_type(content_type) if content_type else ""
        if kind == JSON:
            try:
                data = json.loads(input_data)
            except ValueError as exc:
                raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
            return self.np.array(data) if self.np is not None else data
        if kind == CSV:
            text = input_data if isinstance(input_data, str) else input_data.decode("utf-8")
            if self.np is not None:
                return self.np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")
            return [
                [_number_or_text(field) for field in row]
                for row in csv.reader(io.StringIO(text))
                if row
            ]
        if kind in (NPY, NPZ):
            return self._decode_numpy(kind, _as_bytes(input_data))
        raise UnsupportedFormatError(
            f"content type {content_type!r} is not supported by the default input_fn; "
            f"send one of {JSON}, {CSV}, {NPY}, {NPZ} or define input_fn"
        )

    def output_fn(self, prediction: Any, accept: str) -> tuple[str | bytes, str]:
        chosen = self.negotiate(accept)
        if chosen is None:
            raise NotAcceptableError(
                f"accept type {accept!r} is not supported by the default output_fn; "
                f"ask for one of {', '.join(self.encodable)} or define output_fn"
            )
        if chosen == JSON:
            return json.dumps(prediction, default=_to_list), JSON
        if chosen == CSV:
            return self._encode_csv(prediction), CSV
        np = self.np
        assert np is not None  # NPY is only negotiated with numpy present
        buffer = io.BytesIO()
        np.save(buffer, prediction)
        return buffer.getvalue(), NPY

    def negotiate(self, accept: str) -> str | None:
        """The first type in a comma-separated Accept we can encode; ``*/*`` means the default."""
        for part in accept.split(","):
            kind = media_type(part)
            if kind == ANY:
                kind = media_type(self.default_accept)
            if kind in self.encodable:
                return kind
        return None

    def _decode_numpy(self, kind: str, body: bytes) -> Any:
        if self.np is None:
            raise UnsupportedFormatError(f"{kind} bodies need numpy, which is not installed")
        try:
            if kind == NPY:
                return self.np.load(io.BytesIO(body), allow_pickle=False)
            try:
                sparse = importlib.import_module("scipy.sparse")
            except ImportError as exc:
                raise UnsupportedFormatError(f"{kind} bodies need scipy, not installed") from exc
            return sparse.load_npz(io.BytesIO(body))
        except (ValueError, OSError, EOFError) as exc:
            raise BadRequestError(f"request body is not a valid {kind} payload: {exc}") from exc

    def _encode_csv(self, prediction: Any) -> str:
        stream = io.StringIO()
        if self.np is not None:
            self.np.savetxt(stream, prediction, delimiter=",", fmt="%s")
            return stream.getvalue()
        writer = csv.writer(stream, lineterminator="\n")
        rows = prediction if isinstance(prediction, list | tuple) else [prediction]
        for row in rows:
            writer.writerow(row if isinstance(row, list | tuple) else [row])
        return stream.getvalue()


def _number_or_text(field: str) -> float | str:
    try:
        return float(field)
    except ValueError:
        return field


def _to_list(value: Any) -> Any:
    # numpy arrays and scalars (and torch tensors) all offer tolist(); no numpy import needed.
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return tolist()


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data
