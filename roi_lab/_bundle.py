"""Where the app, its pages and config, the sample files and the benchmark are: in the wheel, or in a checkout.

A source checkout keeps them at its top level (``streamlit_app.py``, ``app_pages/``, ``.streamlit/config.toml``,
``sample_data/``, ``benchmarks/bench_roi_align.py``). A wheel carries the same files, in the same relative
layout, as package data under ``roi_lab/_bundled/`` (``setup.py`` copies them at build time). :func:`root` is
the folder holding them: the packaged copy when there is one (read through ``importlib.resources``), else the
checkout this package runs from (``pip install -e .``, ``make run``, the tests).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["root", "installed", "path", "BundleMissing"]

PACKAGED = "_bundled"
_CHECKOUT = Path(__file__).resolve().parent.parent


class BundleMissing(FileNotFoundError):
    """Neither the wheel's ``roi_lab/_bundled/`` nor a source checkout holds the file asked for."""


def _packaged() -> Path | None:
    where = importlib.resources.files("roi_lab").joinpath(PACKAGED)
    # pip installs wheels as plain files, so this is a real folder; a zip import (no real paths) has none
    return where if isinstance(where, Path) and where.is_dir() else None


def installed() -> bool:
    """True when the files come from the wheel's ``roi_lab/_bundled/`` (not from a source checkout)."""
    return _packaged() is not None


def root() -> Path:
    """The folder with ``streamlit_app.py``, ``app_pages/``, ``sample_data/``, ... (see the module docstring)."""
    packaged = _packaged()
    if packaged is not None:
        return packaged
    if (_CHECKOUT / "streamlit_app.py").is_file() and (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT
    raise BundleMissing(
        f"roi_lab has no {PACKAGED}/ folder (the app and samples a wheel carries) and {_CHECKOUT} is not a source "
        "checkout; reinstall it from a wheel or the sdist: pip install --force-reinstall 'roi-lab[app]'"
    )


def path(relative: str) -> Path:
    """``root() / relative``, refused with :class:`BundleMissing` (saying how to fix it) when it is not there."""
    target = root() / relative
    if not target.exists():
        raise BundleMissing(
            f"{target} is missing: roi_lab's bundled files are incomplete; reinstall: "
            "pip install --force-reinstall 'roi-lab[app]'"
        )
    return target
