"""A test model whose behaviour the request chooses.

Body (text/plain or any non-JSON type) selects what happens:
- ``sleep:<seconds>``  wait, then echo; ``sleep:<seconds>@<path>`` first creates the file <path>
- ``raise:<message>``  raise ValueError (the runtime answers 500)
- ``status:<code>``    raise an error that carries ``status_code``
- ``crash``            kill this worker process
- anything else        echo the body back with the request's content type
With ``Accept: application/x-inspect`` the answer is the JSON of the request headers instead.
"""

import json
import os
import time


class StatusError(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir):
    # LOAD_DELAY (seconds) makes loading slow, to observe an endpoint while it is Creating.
    time.sleep(float(os.environ.get("LOAD_DELAY", "0")))
    return {"pid": os.getpid()}


def transform_fn(model, data, content_type, accept, context):
    raw = data.encode() if isinstance(data, str) else data
    if accept == "application/x-inspect":
        return json.dumps(
            {"headers": context.request_headers, "pid": model["pid"], "body": raw.decode()}
        ), "application/json"
    if raw.startswith(b"sleep:"):
        seconds, _, marker = raw[6:].decode().partition("@")
        if marker:
            open(marker, "w").close()
        time.sleep(float(seconds))
    elif raw.startswith(b"raise:"):
        raise ValueError(raw[6:].decode())
    elif raw.startswith(b"status:"):
        raise StatusError(int(raw[7:]), f"custom status {int(raw[7:])}")
    elif raw == b"crash":
        os._exit(7)
    if context.custom_attributes:
        context.set_custom_attributes("echo:" + context.custom_attributes)
    return raw, content_type or "application/octet-stream"
