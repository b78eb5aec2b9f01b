import subprocess
import sys

import stethoscope.detectors as D


def test_all_names_are_exported_once():
    for name in D.__all__:
        assert hasattr(D, name), name
    assert len(set(D.__all__)) == len(D.__all__)


def test_import_pulls_in_neither_torch_nor_the_server():
    code = ("import sys, stethoscope.detectors; "
            "bad = [m for m in ('torch', 'fastapi', 'stethoscope.app', 'stethoscope.collector') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docstring_examples_run():
    import doctest
    import importlib
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules(D.__path__)]
    assert {"balance", "collapse", "overfitting", "suite", "config", "rank", "stall"} <= set(
        names)
    for name in names:
        mod = importlib.import_module(f"stethoscope.detectors.{name}")
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.__name__
