"""The typed API: what ``make typecheck`` (mypy, ``[tool.mypy]`` in pyproject) checks, kept honest at run time.

``tests/typecheck/public_api.py`` is the API as a user's type checker sees it; here its functions run, so every
call it type-checks is a real one. The package's ``if TYPE_CHECKING:`` imports (what type checkers see in
place of the lazy ``__getattr__``) must name every public name, from the module that defines it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import roi_lab

ROOT = Path(__file__).resolve().parents[1]


def _public_api():
    spec = importlib.util.spec_from_file_location("public_api", ROOT / "tests" / "typecheck" / "public_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["ops", "findings", "samples_and_capture", "errors"])
def test_the_type_checked_calls_run(name):
    getattr(_public_api(), name)()


def test_the_type_checked_figures_run():
    pytest.importorskip("plotly", reason="roi_lab.viz needs plotly (the [viz] or [app] extra)")
    image, sample = roi_lab.load_sample("synthetic")
    features = torch.randn(1, 8, 29, 38)
    _public_api().figures(image, features, sample.boxes_image[:2])


def test_type_checkers_see_every_public_name_from_its_module():
    tree = ast.parse((ROOT / "roi_lab" / "__init__.py").read_text())
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("roi_lab."):
            for alias in node.names:
                if alias.asname == alias.name:  # `from m import a as a`: an explicit re-export
                    seen[alias.name] = node.module
    assert seen == roi_lab._EXPORTS


def test_mypy_config_checks_the_public_modules():
    import tomllib

    files = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"])
    public = set()
    for module in set(roi_lab._EXPORTS.values()):  # a module, or a package (its __init__.py)
        path = Path(*module.split("."))
        public.add((path / "__init__.py").as_posix() if (ROOT / path).is_dir() else f"{path.as_posix()}.py")
    assert public - files == set()
    assert {"roi_lab/__init__.py", "roi_lab/viz.py", "roi_lab/cli.py", "tests/typecheck/public_api.py"} <= files
    assert [f for f in files if not (ROOT / f).is_file()] == []
