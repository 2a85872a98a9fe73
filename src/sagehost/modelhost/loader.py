"""Find the handler module, pick its functions, and load the model (§9).

Mirrors the toolkit: ``<model_dir>/code`` goes first on ``sys.path``; the module is
``$SAGEMAKER_PROGRAM`` without ``.py`` (else ``inference``); when no such module exists every
function takes its default, and the default ``model_fn`` raises NotImplementedError. Defining
``transform_fn`` together with any of ``input_fn``/``predict_fn``/``output_fn`` is a ValueError.

Multi-model mode loads each model with ``load_isolated_pipeline`` instead, which imports the
handler module under a private name (``isolation.py``), so two models' modules never collide.

Besides the toolkit's functions, sagehost reads three optional hooks (sagehost-specific):
``model_unload_fn(model)`` (multi-model unload), ``open_session_fn(session, model)`` and
``close_session_fn(session, model)`` (stateful sessions, ``sessions.py``).

Every function may take one extra trailing ``context`` parameter. Like the toolkit we count the
parameters (all of them, as ``inspect.signature`` lists them): the expected count means no
context, one more means context. Unlike the toolkit, another count fails at load time instead
of on every request.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sagehost.modelhost.context import Context
from sagehost.modelhost.defaults import (
    Codecs,
    default_model_fn,
    default_predict_fn,
    optional_numpy,
)
from sagehost.modelhost.errors import HandlerError
from sagehost.modelhost.isolation import forget_module, import_isolated
from sagehost.modelhost.pipeline import Handler, Pipeline
from sagehost.protocol.container import CODE_SUBDIR, REQUIREMENTS_FILE

logger = logging.getLogger("sagehost.modelhost")

# name -> number of parameters without the optional trailing context
_ARITY = {
    "pre_model_fn": 1,
    "model_fn": 1,
    "model_warmup_fn": 2,
    "input_fn": 2,
    "predict_fn": 2,
    "output_fn": 2,
    "transform_fn": 4,
    "model_unload_fn": 1,
    "open_session_fn": 2,
    "close_session_fn": 2,
}


@dataclass(frozen=True, slots=True)
class HandlerModule:
    """The functions picked from the handler module; ``None`` means "use the default"."""

    module: ModuleType | None
    functions: dict[str, Handler]

    def get(self, name: str) -> Handler | None:
        return self.functions.get(name)


def prepare_code_dir(model_dir: str) -> None:
    """Put ``<model_dir>/code`` first on sys.path; warn that requirements.txt is not installed."""
    code_dir = os.path.join(model_dir, CODE_SUBDIR)
    if not os.path.isdir(code_dir):
        return
    if code_dir in sys.path:
        sys.path.remove(code_dir)
    sys.path.insert(0, code_dir)
    importlib.invalidate_caches()
    _warn_requirements(code_dir)


def _warn_requirements(code_dir: str) -> None:
    requirements = os.path.join(code_dir, REQUIREMENTS_FILE)
    if os.path.isfile(requirements):
        # Installing would need network access and would change a shared interpreter.
        logger.warning("%s was not installed: modelhost never installs packages", requirements)


def import_handler_module(module_name: str) -> HandlerModule:
    """Import the module (if it exists) and check its functions' signatures."""
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        logger.warning("no handler module %r found; using the default handlers", module_name)
        return HandlerModule(None, {})
    return pick_handlers(importlib.import_module(module_name), module_name)


def pick_handlers(module: ModuleType, module_name: str) -> HandlerModule:
    """The handler functions ``module`` defines, with their signatures checked."""
    functions: dict[str, Handler] = {}
    for name, arity in _ARITY.items():
        fn = getattr(module, name, None)
        if fn is None:
            continue
        if not callable(fn):
            raise HandlerError(f"{module_name}.{name} is not callable")
        functions[name] = Handler(fn, _takes_context(fn, name, arity))
    if "transform_fn" in functions and functions.keys() & {"input_fn", "predict_fn", "output_fn"}:
        raise ValueError(
            "Cannot use transform_fn implementation in conjunction with input_fn, "
            "predict_fn, and/or output_fn implementation"
        )
    return HandlerModule(module, functions)


def load_pipeline(model_dir: str, module_name: str, default_accept: str) -> Pipeline:
    """Everything that happens before ``/ping`` says 200. Any exception is a load failure."""
    prepare_code_dir(model_dir)
    return build_pipeline(model_dir, import_handler_module(module_name), default_accept)


def load_isolated_pipeline(
    model_dir: str,
    module_name: str,
    module_key: str,
    default_accept: str,
    import_lock: threading.Lock,
) -> Pipeline:
    """Load one model of a multi-model container; its handler module is ``module_key`` in
    ``sys.modules`` until ``forget_module(module_key)``. Any exception is a load failure."""
    code_dir = os.path.join(model_dir, CODE_SUBDIR)
    module = import_isolated(code_dir, module_name, module_key, import_lock)
    try:
        if module is None:
            logger.warning(
                "no handler module %r in %s; using the default handlers", module_name, code_dir
            )
            handlers = HandlerModule(None, {})
        else:
            _warn_requirements(code_dir)
            handlers = pick_handlers(module, module_name)
        return build_pipeline(model_dir, handlers, default_accept)
    except BaseException:
        forget_module(module_key)
        raise


def build_pipeline(model_dir: str, handlers: HandlerModule, default_accept: str) -> Pipeline:
    """Run the loading hooks and ``model_fn``, then bind the request handlers."""
    context = Context(model_dir)

    pre_model = handlers.get("pre_model_fn")
    if pre_model is not None:
        pre_model.call(context, model_dir)
    model_fn = handlers.get("model_fn") or Handler(default_model_fn, False)
    model = model_fn.call(context, model_dir)
    warmup = handlers.get("model_warmup_fn")
    if warmup is not None:
        warmup.call(context, model_dir, model)

    transform = handlers.get("transform_fn")
    input_fn = handlers.get("input_fn")
    output_fn = handlers.get("output_fn")
    codecs = None
    if transform is None and (input_fn is None or output_fn is None):
        # Import numpy now, not on the first request, when the defaults will need it.
        codecs = Codecs(optional_numpy(), default_accept)
    return Pipeline(
        model=model,
        model_dir=model_dir,
        transform_fn=transform,
        input_fn=input_fn or _bound(codecs, "input_fn"),
        predict_fn=handlers.get("predict_fn") or Handler(default_predict_fn, False),
        output_fn=output_fn or _bound(codecs, "output_fn"),
        user_output_fn=output_fn is not None,
        model_unload_fn=handlers.get("model_unload_fn"),
        open_session_fn=handlers.get("open_session_fn"),
        close_session_fn=handlers.get("close_session_fn"),
    )


def _bound(codecs: Codecs | None, name: str) -> Handler:
    # Without codecs transform_fn is in charge and these are never called.
    fn: Callable[..., Any] = getattr(codecs, name) if codecs is not None else _unreachable
    return Handler(fn, False)


def _unreachable(*args: object) -> Any:
    raise AssertionError("default codecs are not used when transform_fn is defined")


def _takes_context(fn: Callable[..., Any], name: str, arity: int) -> bool:
    try:
        count = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False  # builtins without a signature: call them without context
    if count == arity:
        return False
    if count == arity + 1:
        return True
    raise HandlerError(
        f"{name} must take {arity} parameters, or {arity + 1} with a trailing context; "
        f"{getattr(fn, '__qualname__', name)} takes {count}"
    )
