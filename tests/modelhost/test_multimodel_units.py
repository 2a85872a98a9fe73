"""Multi-model pieces that need no process: settings and the isolated import of handler modules."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sagehost.modelhost.isolation import find_handler_file, forget_module, import_isolated
from sagehost.modelhost.settings import Settings

LOCK = threading.Lock()


def code_dir(root: Path, files: dict[str, str]) -> Path:
    code = root / "code"
    for rel, text in files.items():
        path = code / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return code


def test_multi_model_setting() -> None:
    assert Settings.from_env({}).multi_model is False
    assert Settings.from_env({"SAGEMAKER_MULTI_MODEL": "TRUE"}).multi_model is True
    assert Settings.from_env({"SAGEMAKER_MULTI_MODEL": "false"}).multi_model is False


def test_two_handler_modules_keep_their_own_helpers(tmp_path: Path) -> None:
    paths_before = list(sys.path)
    modules = []
    for name in ("one", "two"):
        code = code_dir(
            tmp_path / name,
            {
                "inference.py": "import mmhelper\nWHO = mmhelper.NAME\n",
                "mmhelper.py": f"NAME = {name!r}\n",
            },
        )
        modules.append(import_isolated(str(code), "inference", f"test_iso_{name}", LOCK))
    try:
        assert [m.WHO for m in modules if m is not None] == ["one", "two"]
        assert "mmhelper" not in sys.modules and "inference" not in sys.modules
        assert sys.modules["test_iso_one"] is modules[0]
        assert sys.path == paths_before
    finally:
        forget_module("test_iso_one")
        forget_module("test_iso_two")
    assert "test_iso_one" not in sys.modules


def test_code_modules_imported_inside_functions_are_not_found(tmp_path: Path) -> None:
    # The documented cost of isolation: code/ is on sys.path only while the module executes.
    code = code_dir(
        tmp_path,
        {
            "inference.py": "def late():\n    import mmlate\n    return mmlate\n",
            "mmlate.py": "X = 1\n",
        },
    )
    module = import_isolated(str(code), "inference", "test_iso_late", LOCK)
    try:
        assert module is not None
        with pytest.raises(ModuleNotFoundError, match="mmlate"):
            module.late()
    finally:
        forget_module("test_iso_late")


def test_packages_dotted_names_and_missing_modules(tmp_path: Path) -> None:
    code = code_dir(
        tmp_path,
        {
            "pkg/__init__.py": (
                "from .part import VALUE\n"
                "def late():\n    from . import later\n    return later.X\n"
            ),
            "pkg/part.py": "VALUE = 'relative import works'\n",
            "pkg/later.py": "X = 'later too'\n",
            "sub/entry.py": "NAME = __name__\n",
            "ns/thing.py": "X = 1\n",
        },
    )
    assert find_handler_file(str(code), "pkg") == (str(code / "pkg" / "__init__.py"), True)
    assert find_handler_file(str(code), "sub.entry") == (str(code / "sub" / "entry.py"), False)
    assert find_handler_file(str(code), "absent") is None
    assert import_isolated(str(code), "absent", "test_iso_absent", LOCK) is None
    package = import_isolated(str(code), "pkg", "test_iso_pkg", LOCK)
    entry = import_isolated(str(code), "sub.entry", "test_iso_entry", LOCK)
    try:
        assert package is not None and package.VALUE == "relative import works"
        assert package.late() == "later too"
        assert entry is not None and entry.NAME == "test_iso_entry"
    finally:
        forget_module("test_iso_pkg")
        forget_module("test_iso_entry")
    assert not [name for name in sys.modules if name.startswith("test_iso_pkg")]


def test_a_failing_import_leaves_nothing_behind(tmp_path: Path) -> None:
    code = code_dir(
        tmp_path,
        {"inference.py": "import mmdep\nraise RuntimeError('broken at import')\n", "mmdep.py": ""},
    )
    paths_before = list(sys.path)
    with pytest.raises(RuntimeError, match="broken at import"):
        import_isolated(str(code), "inference", "test_iso_broken", LOCK)
    assert "test_iso_broken" not in sys.modules and "mmdep" not in sys.modules
    assert sys.path == paths_before
