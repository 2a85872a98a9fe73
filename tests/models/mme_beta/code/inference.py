"""Multi-model test model "beta": transform_fn style, text bodies.

- ``who``           -> ``beta/<helper.NAME>`` as text/plain
- ``stream:<n>``    -> a generator of ``b0 ``, ``b1 ``, ... (chunked response)
- ``raise:<msg>``   -> ValueError(msg), a 500
- ``status:<code>`` -> an error carrying that status_code
- anything else     -> echoed back with the request's content type
"""

import helper


class StatusError(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir):
    return "beta-model"


def _tokens(count):
    for i in range(count):
        yield f"b{i} "


def transform_fn(model, data, content_type, accept):
    text = data.decode() if isinstance(data, bytes) else data
    if text == "who":
        return f"beta/{helper.NAME}", "text/plain"
    if text.startswith("stream:"):
        return _tokens(int(text[7:])), "text/event-stream"
    if text.startswith("raise:"):
        raise ValueError(text[6:])
    if text.startswith("status:"):
        raise StatusError(int(text[7:]), f"custom status {text[7:]}")
    return text, content_type or "application/octet-stream"
