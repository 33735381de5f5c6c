"""The public namespace: every exported name resolves, and submodule imports cannot shadow functions."""

import subprocess
import sys

import roi_lab


def test_every_public_name_resolves():
    missing = [name for name in roi_lab.__all__ if getattr(roi_lab, name, None) is None]
    assert missing == []


def test_diagnose_stays_the_function_after_importing_its_module():
    # A fresh interpreter, so the import order is exactly the one that used to shadow the function.
    code = "import roi_lab.diagnose, roi_lab; print(callable(roi_lab.diagnose) and roi_lab.diagnose.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "diagnose", out.stderr
    from roi_lab import diagnose

    assert diagnose.__module__ == "roi_lab.diagnose" and not isinstance(diagnose, type(roi_lab))


def test_unknown_attribute_is_an_attribute_error():
    try:
        roi_lab.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("expected AttributeError")
