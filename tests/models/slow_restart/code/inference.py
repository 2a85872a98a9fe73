"""A test model that loads at once the first time and very slowly after a restart.

``MARKER`` (environment) names a file: the first load creates it; a load that finds it
sleeps ``RESTART_DELAY`` seconds (default 60), so an instance that crashed stays unready.
Body ``crash`` kills the worker process; anything else is echoed.
"""

import os
import time


def model_fn(model_dir):
    marker = os.environ["MARKER"]
    if os.path.exists(marker):
        time.sleep(float(os.environ.get("RESTART_DELAY", "60")))
    else:
        open(marker, "w").close()
    return {}


def transform_fn(model, data, content_type, accept, context):
    raw = data.encode() if isinstance(data, str) else data
    if raw == b"crash":
        os._exit(3)
    return raw, content_type or "application/octet-stream"
