"""One stage of a test inference pipeline: it records itself in the JSON body it passes on.

Environment: ``STAGE`` (its name, default ``stage``) and ``STAGE_TYPE`` (the Content-Type of
its answer, default ``application/json``).

The request body is a JSON object whatever its Content-Type. The answer is the same object
with one entry appended to ``trail``: ``{"stage", "content_type", "accept", "custom"}``, the
headers this stage received (``null`` when absent). When the object has a ``prefix`` string,
``"<STAGE>."`` is appended to it (a ``streamer`` model after the stages then streams tokens
that show every stage ran, in order). The answer carries custom attributes
``from=<STAGE>``.

Per-stage directives, keyed by stage name:

- ``{"fail": {"<STAGE>": <status>}}``  answer that status with ``<STAGE> failed on purpose``
- ``{"sleep": {"<STAGE>": <seconds>}}`` wait first
- ``{"stream": {"<STAGE>": <n>}}``  instead of the JSON, stream ``n`` chunks
  ``"<prefix><i> "`` (``prefix`` after this stage appended itself) of type ``STAGE_TYPE``
"""

import json
import os
import time

STAGE = os.environ.get("STAGE", "stage")
STAGE_TYPE = os.environ.get("STAGE_TYPE", "application/json")


class StatusError(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir):
    return {}


def transform_fn(model, data, content_type, accept, context):
    raw = data.encode() if isinstance(data, str) else data
    request = json.loads(raw)
    seconds = request.get("sleep", {}).get(STAGE)
    if seconds:
        time.sleep(float(seconds))
    status = request.get("fail", {}).get(STAGE)
    if status:
        raise StatusError(int(status), f"{STAGE} failed on purpose")
    headers = context.request_headers
    request.setdefault("trail", []).append(
        {
            "stage": STAGE,
            "content_type": headers.get("content-type"),
            "accept": headers.get("accept"),
            "custom": headers.get("x-amzn-sagemaker-custom-attributes"),
        }
    )
    if isinstance(request.get("prefix"), str):
        request["prefix"] += f"{STAGE}."
    context.set_custom_attributes(f"from={STAGE}")
    count = request.get("stream", {}).get(STAGE)
    if count:
        prefix = request.get("prefix", "")
        return (f"{prefix}{i} " for i in range(int(count))), STAGE_TYPE
    return json.dumps(request), STAGE_TYPE
