"""A model whose load waits for a gate file: ``model_fn`` creates ``<model_dir>/loading`` and
appends to ``<model_dir>/loads.log``, then waits (15 s at most) until ``<model_dir>/gate``
exists."""

import os
import time


def model_fn(model_dir):
    with open(os.path.join(model_dir, "loads.log"), "a") as log:
        log.write("load\n")
    open(os.path.join(model_dir, "loading"), "w").close()
    gate = os.path.join(model_dir, "gate")
    deadline = time.monotonic() + 15
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(gate)
        time.sleep(0.005)
    return "slow"


def transform_fn(model, data, content_type, accept):
    return "slow model ready", "text/plain"
