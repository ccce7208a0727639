"""``mlprod.lazy``: exports and libraries are imported on first use, and then behave as usual."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_package_export_is_imported_when_first_used() -> None:
    assert (
        _run("""
        import sys
        import mlprod.models
        before = "mlprod.models.registry" in sys.modules
        from mlprod.models import Registry
        print(before, Registry.__module__, "mlprod.models.registry" in sys.modules)
    """)
        == "False mlprod.models.registry True"
    )


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert (
        _run("""
        import mlprod.models
        try:
            mlprod.models.Nothing
        except AttributeError as exc:
            print(exc)
    """)
        == "module 'mlprod.models' has no attribute 'Nothing'"
    )


def test_an_export_named_like_its_submodule_stays_the_export() -> None:
    """``mlprod.evaluate.gate`` is a function in ``gate.py``: importing the module must not hide it."""
    assert (
        _run("""
        import mlprod.evaluate.gate
        from mlprod.evaluate import gate
        print(callable(gate), type(gate).__name__)
    """)
        == "True function"
    )


def test_a_lazy_library_loads_on_first_attribute_and_keeps_its_names() -> None:
    assert (
        _run("""
        import sys
        from mlprod.lazy import lazy_module
        pc = lazy_module("pyarrow.compute")
        before = "pyarrow" in sys.modules
        total = pc.sum([1, 2]).as_py()
        same = lazy_module("pyarrow.compute") is sys.modules["pyarrow.compute"]
        print(before, total, "sum" in vars(pc), same)
    """)
        == "False 3 True True"
    )
