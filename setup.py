"""Build hook: copy the app, its pages, its config, the bundled samples and the benchmark into the wheel.

The checkout keeps them at its top level (``streamlit_app.py``, ``app_pages/``, ``.streamlit/config.toml``,
``sample_data/``, ``benchmarks/bench_roi_align.py``), where ``make run``, the tests and the other benchmarks use
them. A wheel has only packages, so ``build_py`` copies them, unchanged, to ``roi_lab/_bundled/`` (the same
relative layout), and :mod:`roi_lab._bundle` finds them there through ``importlib.resources``. An editable
install (``pip install -e .``) copies nothing: the package runs from the checkout and uses the files where
they are. Everything else is in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLE = Path("roi_lab") / "_bundled"
# what the installed package needs of the top level (files, or folders and the file patterns taken from them);
# MANIFEST.in puts the same files into the sdist, so a wheel built from the sdist bundles them too
BUNDLED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("streamlit_app.py", ()),
    (".streamlit/config.toml", ()),
    ("app_pages", ("*.py",)),
    ("sample_data", ("*.png", "*.json", "README.md")),
    ("benchmarks/bench_roi_align.py", ()),
)


def bundled_files(root: Path = ROOT) -> list[str]:
    """The top-level files the wheel carries, as paths relative to ``root``, sorted."""
    out: set[str] = set()
    for name, patterns in BUNDLED:
        path = root / name
        if not patterns:
            if not path.is_file():
                raise FileNotFoundError(f"setup.py: {name} is missing from {root}; the wheel needs it")
            out.add(name)
            continue
        for pattern in patterns:
            out.update(p.relative_to(root).as_posix() for p in path.glob(pattern) if p.is_file())
    return sorted(out)


class BuildWithBundle(build_py):
    """``build_py`` that also copies :data:`BUNDLED` to ``roi_lab/_bundled/`` (not in editable mode)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # runs from the checkout: roi_lab._bundle finds the files at the top level
        target = Path(self.build_lib) / BUNDLE
        shutil.rmtree(target, ignore_errors=True)  # nothing stale from an earlier build
        for rel in bundled_files():
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)


setup(cmdclass={"build_py": BuildWithBundle})
