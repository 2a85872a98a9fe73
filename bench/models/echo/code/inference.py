"""Echo model for benchmarks: the response is the request body, with its content type."""


def model_fn(model_dir):
    return None


def transform_fn(model, data, content_type, accept):
    return data, content_type or "application/octet-stream"
