"""A stateful-session test model: a counter kept in ``context.session.state``.

JSON body (application/json), ``op`` chooses:
- ``count`` (default)  read the counter, optionally sleep ``sleep_s`` (a read-modify-write that
                       loses updates if two calls of one session ever overlap), store it + 1 and
                       answer ``{"session": <id or null>, "count": <n>, "expires": <ISO time>}``
- ``stream``           a generator: yields ``"<id>:<count>"`` ``n`` times (default 3), adding
                       one to the counter per item
Hooks: ``open_session_fn`` starts the counter at 0 (refuses with 403 when the custom attributes
are ``refuse``); ``close_session_fn`` appends ``<id>`` to ``<model_dir>/closed.log``.
"""

import json
import os
import time


class StatusError(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir):
    return {"dir": model_dir}


def open_session_fn(session, model, context):
    if context.custom_attributes == "refuse":
        raise StatusError(403, "this model refuses new sessions today")
    session.state["count"] = 0


def close_session_fn(session, model):
    with open(os.path.join(model["dir"], "closed.log"), "a") as log:
        log.write(f"{session.session_id} count={session.state.get('count')}\n")


def input_fn(data, content_type):
    return json.loads(data)


def _stream(session, n):
    for _ in range(n):
        session.state["count"] += 1
        yield f"{session.session_id}:{session.state['count']}\n"


def predict_fn(request, model, context):
    session = context.session
    op = request.get("op", "count")
    if op == "stream":
        return _stream(session, int(request.get("n", 3)))
    if session is None:
        return {"session": None, "count": None, "expires": None}
    count = session.state["count"]
    time.sleep(float(request.get("sleep_s", 0)))
    session.state["count"] = count + 1
    expires = session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"session": session.session_id, "count": count + 1, "expires": expires}


def output_fn(prediction, accept):
    if isinstance(prediction, str):
        return prediction
    return json.dumps(prediction), "application/json"
