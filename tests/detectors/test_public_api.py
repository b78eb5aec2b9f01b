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

    from stethoscope.detectors import (
        balance,
        base,
        collapse,
        findings,
        gradients,
        metrics,
        naming,
        nonfinite,
        oscillation,
        runtime,
        spikes,
    )

    for mod in (balance, base, collapse, findings, gradients, metrics, naming, nonfinite,
                oscillation, runtime, spikes):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.__name__
