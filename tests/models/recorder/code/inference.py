"""A test model that records what it receives and answers differently from ``behave``.

Environment:
- ``RECORD_FILE``  append each request body (one line each) to this file
- ``DELAY``        seconds to sleep before answering
- ``FAIL``         when set, every call raises (the runtime answers 500)
The answer is ``recorded:<body>``.
"""

import os
import time


def model_fn(model_dir):
    return {
        "record": os.environ.get("RECORD_FILE"),
        "delay": float(os.environ.get("DELAY", "0")),
        "fail": bool(os.environ.get("FAIL")),
    }


def transform_fn(model, data, content_type, accept, context):
    raw = data.encode() if isinstance(data, str) else data
    if model["record"]:
        with open(model["record"], "ab") as out:
            out.write(raw + b"\n")
    time.sleep(model["delay"])
    if model["fail"]:
        raise ValueError("the recorder was told to fail")
    return b"recorded:" + raw, "text/plain"
