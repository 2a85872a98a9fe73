"""Import one model's handler module so that it cannot collide with another model's.

In multi-model mode every model may bring its own ``code/inference.py``, and often its own
helper modules with common names (``utils.py``, ``model.py``). One interpreter has one
``sys.modules``, so importing them the single-model way would hand the second model the first
one's modules. Instead:

- the handler module is executed under a private name (``module_key``, e.g.
  ``sagehost_model_3_inference``) that is registered in ``sys.modules`` only while the model is
  loaded (classes defined in it keep resolving, e.g. for dataclasses and pickle);
- ``<model_dir>/code`` is first on ``sys.path`` only while that module executes, under a lock, so
  its top-level imports find the model's own helpers;
- afterwards every module that was imported from that ``code`` directory is taken out of
  ``sys.modules``: the handler module keeps its references, the next model imports its own.

The cost (sagehost-specific, documented in docs/runtime.md): a helper from ``code/`` must be
imported at the top level of the handler module. An import inside a function runs later, when
``code/`` is no longer on the path, and raises ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from types import ModuleType


def find_handler_file(code_dir: str, module_name: str) -> tuple[str, bool] | None:
    """``(path, is_package)`` of ``module_name`` (dots are sub-directories) under ``code_dir``."""
    base = os.path.join(code_dir, *module_name.split("."))
    if os.path.isfile(base + ".py"):
        return base + ".py", False
    package_init = os.path.join(base, "__init__.py")
    if os.path.isfile(package_init):
        return package_init, True
    return None


def import_isolated(
    code_dir: str, module_name: str, module_key: str, lock: threading.Lock
) -> ModuleType | None:
    """Execute ``<code_dir>/<module_name>.py`` as ``module_key``; None when there is no such file.

    On failure nothing stays registered. ``forget_module(module_key)`` undoes a success.
    """
    found = find_handler_file(code_dir, module_name)
    if found is None:
        return None
    path, is_package = found
    spec = importlib.util.spec_from_file_location(
        module_key,
        path,
        submodule_search_locations=[os.path.dirname(path)] if is_package else None,
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the handler module from {path}")
    module = importlib.util.module_from_spec(spec)
    with lock:
        before = set(sys.modules)
        sys.path.insert(0, code_dir)
        importlib.invalidate_caches()
        sys.modules[module_key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_key, None)
            raise
        finally:
            sys.path.remove(code_dir)
            _forget_modules_from(code_dir, set(sys.modules) - before - {module_key})
    return module


def forget_module(module_key: str) -> None:
    """Drop the handler module, and the submodules a handler package imported later."""
    prefix = module_key + "."
    for name in [n for n in sys.modules if n == module_key or n.startswith(prefix)]:
        sys.modules.pop(name, None)


def _forget_modules_from(code_dir: str, names: set[str]) -> None:
    root = os.path.realpath(code_dir) + os.sep
    for name in names:
        module = sys.modules.get(name)
        # __file__ for modules and packages, __path__ for namespace packages (no __init__.py).
        origin = getattr(module, "__file__", None)
        places = [origin] if isinstance(origin, str) else list(getattr(module, "__path__", []))
        if any(os.path.realpath(place).startswith(root) for place in places):
            del sys.modules[name]
