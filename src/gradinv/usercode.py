"""The user's own code: a class or function named `path/to/file.py:Name`. The file is executed —
it is the user's code, given on their command line; nothing read from a saved observation or a
downloaded file is ever executed."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from .errors import GradinvError


def is_spec(text: str) -> bool:
    """Whether `text` names code in a file (`file.py:Name`) rather than a registered name."""
    path, sep, name = text.rpartition(":")
    return bool(sep and name and path.endswith(".py"))


def load_object(spec: str, what: str) -> Any:
    """Import `Name` from `file.py`; every failure is one line naming the file and the problem."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        raise GradinvError(f"{what} {spec!r}: expected path/to/file.py:Name")
    if not os.path.isfile(path):
        raise GradinvError(f"{what} {spec!r}: file not found: {path}")
    module_name = f"gradinv_user_{abs(hash(os.path.abspath(path)))}"
    try:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's file may raise anything, SyntaxError included
        sys.modules.pop(module_name, None)
        raise GradinvError(f"{what} {spec!r}: importing {path} failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None  # fmt: skip
    if not hasattr(module, name):
        found = sorted(k for k in vars(module) if not k.startswith("_"))
        raise GradinvError(
            f"{what} {spec!r}: {path} defines no {name!r} (it has: {', '.join(found)})"
        )
    return getattr(module, name)


def load_function(spec: str, what: str) -> Any:
    """A callable from `file.py:function`, tagged with its spec (so it can be recorded)."""
    fn = load_object(spec, what)
    if not callable(fn):
        raise GradinvError(f"{what} {spec!r} is not callable")
    try:
        fn.gradinv_spec = spec
    except (AttributeError, TypeError):
        pass
    return fn
