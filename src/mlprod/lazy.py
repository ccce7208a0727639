"""Lazy imports, so that a command loads only the libraries its own code path uses.

``mlprod models list`` needs SQLAlchemy and the registry, not pandas, pyarrow, DuckDB or LightGBM,
yet a package ``__init__`` that re-exports everything, or a module that imports pyarrow at its top
for one function, would load them all (about a second of start-up). Two tools:

- ``lazy_exports``: a package ``__init__`` declares its public names as imports inside an
  ``if TYPE_CHECKING:`` block (type checkers and readers see the real imports) and gets a module
  ``__getattr__`` that imports a name's module on first use (PEP 562; the idea of scientific-python's
  ``lazy_loader.attach_stub``).
- ``lazy_module``: a stand-in for a heavy library, imported on first attribute access.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any


def exported_imports(init_file: str) -> dict[str, tuple[str, str]]:
    """The names imported in the ``if TYPE_CHECKING:`` block of ``init_file``: name -> (module, attribute)."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    found: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        found[alias.asname or alias.name] = (statement.module, alias.name)
    return found


def lazy_exports(package: str, init_file: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each exported name is imported when first asked for.

    A name that is also a submodule's name (``mlprod.evaluate.gate`` the function, in
    ``mlprod/evaluate/gate.py``) keeps meaning the export even after that submodule is imported:
    the import system would otherwise bind the submodule over it.
    """
    exports = exported_imports(init_file)
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:  # noqa: N807 (the PEP 562 hook has this name)
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source, attribute = exports[name]
        value = getattr(importlib.import_module(source), attribute)
        module.__dict__[name] = value
        return value

    shadowed = {name for name, (source, _) in exports.items() if source == f"{package}.{name}"}
    if shadowed:
        module.__class__ = _exports_win(shadowed)
    return __getattr__


def _exports_win(names: set[str]) -> type[types.ModuleType]:
    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in names and isinstance(value, types.ModuleType):
                value = getattr(value, name)
            super().__setattr__(name, value)

    return _Package


class _LazyModule(types.ModuleType):
    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        # Later look-ups find the library's names here directly, as fast as on the module itself.
        self.__dict__.update({k: v for k, v in vars(module).items() if k not in ("__name__", "__spec__")})
        return getattr(module, attribute)


def lazy_module(name: str) -> Any:
    """``name``'s module, imported on first attribute access (``pa = lazy_module("pyarrow")``)."""
    return sys.modules.get(name) or _LazyModule(name)
