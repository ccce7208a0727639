"""Package hygiene: public surfaces are sorted and complete; layers only import downward."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import mlprod
from mlprod.lazy import exported_imports

SRC = Path(mlprod.__file__).parent
PACKAGES = ["mlprod.data", "mlprod.demo", "mlprod.evaluate", "mlprod.loop", "mlprod.meta", "mlprod.models",
            "mlprod.monitor", "mlprod.serve"]  # fmt: skip
LAYER = {
    **dict.fromkeys(
        [
            "errors",
            "lazy",
            "progress",
            "config",
            "config_check",
            "names",
            "identity",
            "diskspace",
            "artifacts",
            "meta",
            "workspace",
            "suggest",
            "times",
        ],
        0,
    ),
    "data": 1,
    "features": 2,
    "models": 3,
    **dict.fromkeys(["evaluate", "serve", "monitor"], 4),
    "loop": 5,
    **dict.fromkeys(["ui", "cli", "demo", "__main__"], 6),
}


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_names_every_public_import(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__all__ == sorted(package.__all__)
    for symbol in package.__all__:
        assert hasattr(package, symbol), symbol
    tree = ast.parse(Path(package.__file__).read_text())
    eager = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module not in ("typing", "mlprod.lazy")
        for alias in node.names
    }
    assert eager == set(), f"import {sorted(eager)} lazily: inside the `if TYPE_CHECKING:` block"
    assert set(exported_imports(package.__file__)) == set(package.__all__)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "mlprod":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlprod."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mlprod.")}
    return found


def test_every_module_belongs_to_a_layer() -> None:
    tops = {m.name for m in pkgutil.iter_modules([str(SRC)])}
    assert tops <= set(LAYER), tops - set(LAYER)


def test_lower_layers_never_import_higher_ones() -> None:
    upward = []
    for path in SRC.rglob("*.py"):
        own = path.relative_to(SRC).parts[0].removesuffix(".py")
        for target in _imports(path):
            if own in LAYER and target in LAYER and LAYER[target] > LAYER[own]:
                upward.append(f"{path.relative_to(SRC)} imports mlprod.{target}")
    assert upward == []


def test_errors_do_not_depend_on_the_http_framework() -> None:
    assert _imports(SRC / "errors.py") == set()
    assert "fastapi" not in (SRC / "errors.py").read_text()
