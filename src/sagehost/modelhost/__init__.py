"""modelhost: the built-in container-contract server for inference-toolkit handler scripts.

Run it as its own process, ``python -m sagehost.modelhost``. By default it serves one model from
``$SAGEHOST_MODEL_DIR`` (default ``$SAGEMAKER_BASE_DIR/model``, base ``/opt/ml``) on
``$SAGEHOST_BIND_HOST:$SAGEMAKER_BIND_TO_PORT`` (default ``127.0.0.1:8080``), so that an
``inference.py`` written for the SageMaker inference toolkit runs unchanged (runtime-api.md §8, §9).

Handler module: ``<model_dir>/code`` goes first on ``sys.path``; the module is
``$SAGEMAKER_PROGRAM`` without ``.py``, else ``inference``. It may define ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn`` or ``transform_fn`` (not both styles), and the hooks
``pre_model_fn``/``model_warmup_fn``. Each may take a trailing ``context`` argument. The model is
loaded at start-up; ``/ping`` answers 503 until then and 200 after. A failed load prints the
traceback to stderr and exits with status 1. ``code/requirements.txt`` is never installed.

The ``context`` (see ``context.py``)::

    def predict_fn(data, model, context):
        attrs = context.request_headers.get("x-amzn-sagemaker-custom-attributes")
        context.set_response_header("X-Amzn-SageMaker-Custom-Attributes", "trace=1")
        ...

``context.request_headers`` holds the request's headers with lower-case names (custom
attributes, target model, session id, inference id, ...). ``set_response_header`` accepts
``X-Amzn-SageMaker-*`` names only; ``set_custom_attributes(value)`` is the shorthand.

Answers: success is 200 with the handler's body; the content type is the second element of a
``(body, content_type)`` result, else the accept type (``*/*`` or none means
``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, default ``application/json``). An exception with an
int ``status_code`` (400-599) answers that status, any other exception 500. The body is the
message as text/plain; the traceback of a 5xx goes to stderr only (a handler's 4xx logs one
line). 413 above ``$SAGEMAKER_MAX_PAYLOAD_IN_MB`` (default 6 MiB), 404 for other paths, 405 for
other methods.

Streaming: a prediction that is a generator, iterator or async iterator is sent with chunked
transfer, one chunk per item (``app.py`` has the details).

Concurrency: handlers run in a thread pool of ``$SAGEMAKER_MODEL_SERVER_WORKERS`` threads
(default 1, because user handlers are rarely thread-safe); the event loop stays free for
``/ping`` while a prediction runs.

Multi-model mode (``SAGEMAKER_MULTI_MODEL=true``, ``multimodel.py``): no model at start-up;
``/ping`` is 200 at once and models are loaded, listed, unloaded and invoked through
``/models`` (runtime-api.md §8.4). Each model's handler module is imported in isolation.

Stateful sessions (``SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true``, ``sessions.py``): the runtime
opens and closes sessions itself and hands the open one to handlers as ``context.session``.
docs/runtime.md is the user's guide to both.

Modules: ``settings`` (environment -> Settings), ``loader`` (module and model loading),
``isolation`` (handler modules of multi-model mode), ``pipeline`` (one invocation through the
handlers), ``defaults`` (default handlers and codecs), ``context``, ``errors``, ``workers`` (the
thread pool), ``sessions``, ``asgi`` (ASGI helpers), ``invocations`` (one call), ``app``
(single-model ASGI app), ``multimodel`` and ``registry`` (multi-model ASGI app and its models),
``server`` (process lifecycle).
"""
