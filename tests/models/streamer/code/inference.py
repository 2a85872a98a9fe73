"""A test model that streams tokens; the JSON request body chooses the behaviour.

``predict_fn`` returns a generator, so the built-in runtime sends one HTTP chunk per item
(InvokeEndpointWithResponseStream: one PayloadPart per item; InvokeEndpoint: the items joined).
Request keys, all optional:

- ``count``        (int, default 3)  yield ``f"{prefix}{i} "`` for i in range(count):
                   ``{"count": 3}`` streams ``"tok0 "``, ``"tok1 "``, ``"tok2 "``.
- ``prefix``       (str, default ``"tok"``)
- ``fail_after``   (int)  raise RuntimeError("boom") once that many items are out (at the end
                   if ``count`` is smaller). With 1 or more the stream breaks after those
                   items (StreamBroken for the caller); with 0 the failure comes before the
                   first byte, an ordinary 500 from the container (ModelError 424).
- ``gate``         (path)  after the first item, wait until this file exists before yielding
                   the rest (polls, gives up with RuntimeError after 10 s). A client that
                   creates the file on receiving the first part proves the part arrived while
                   the model was still producing.
- ``interval_s``   (float)  sleep this long before each item after the first (steady pacing).
- ``pause_after``  (int) with ``pause_s`` (float)  once that many items are out, fall silent for
                   ``pause_s`` seconds, once (``pause_after: 0`` is silence before the first byte).
- ``closed_marker`` (path)  create this file if the generator is closed before it finished,
                   i.e. the runtime abandoned the stream (the caller went away).
- ``status``       (int)  raise, before any item, an exception whose ``status_code`` is this
                   (``{"status": 418}`` -> container answers 418, caller gets ModelError 424).
- ``content_type`` (str)  the response content type (each item is a ``(text, type)`` tuple);
                   without it, or with no items, the runtime uses the request's Accept type.

Any JSON body works: ``{}`` streams ``tok0 tok1 tok2``. A body that is not JSON is a 400.

The runtime has one worker thread by default and cannot interrupt a sleeping generator: a call
the caller abandoned mid-pause holds that thread until its sleep ends, delaying the next call.
"""

import json
import os
import time

GATE_LIMIT_S = 10.0


class StatusError(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir):
    return {}


def input_fn(data, content_type):
    # The default input_fn would wrap the JSON in a numpy array when numpy is installed.
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StatusError(400, f"the streamer model takes a JSON object: {exc}") from exc


def predict_fn(request, model):
    if "status" in request:
        # Raised here, not inside the generator, so nothing at all has been produced.
        raise StatusError(int(request["status"]), f"custom status {request['status']}")
    return _tokens(request)


def _tokens(request):
    count = int(request.get("count", 3))
    prefix = str(request.get("prefix", "tok"))
    fail_after = request.get("fail_after")
    gate = request.get("gate")
    content_type = request.get("content_type")
    interval_s = float(request.get("interval_s", 0))
    pause_after = request.get("pause_after")
    closed_marker = request.get("closed_marker")
    try:
        for i in range(count):
            if fail_after is not None and i == int(fail_after):
                raise RuntimeError("boom")
            if pause_after is not None and i == int(pause_after):
                time.sleep(float(request.get("pause_s", 0)))
            if gate and i == 1:
                _wait_for(gate)
            if interval_s and i > 0:
                time.sleep(interval_s)
            text = f"{prefix}{i} "
            yield (text, content_type) if content_type else text
        if fail_after is not None and int(fail_after) >= count:
            raise RuntimeError("boom")
    except GeneratorExit:
        if closed_marker:
            open(closed_marker, "w").close()
        raise


def _wait_for(path):
    deadline = time.monotonic() + GATE_LIMIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"gate {path} did not open within {GATE_LIMIT_S:g} s")
        time.sleep(0.01)
