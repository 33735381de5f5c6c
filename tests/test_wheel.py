"""The wheel is the product: built as a user's pip builds it, installed into a fresh venv, used outside the checkout.

The sdist is built from the checkout (setuptools' PEP 517 hook, what ``python -m build --sdist`` calls), unpacked,
and ``pip wheel --no-deps`` builds the wheel from it: a clean tree (no stale ``build/``), and proof that the sdist
holds everything the wheel needs. The wheel goes into a new venv (``--without-pip``; this interpreter's pip
installs into it). That venv reuses the packages of the environment running the tests (torch, streamlit, ...)
through a ``.pth`` line naming its site-packages, written after the install so pip never sees them; ``.pth``
files inside that folder are not processed, so the checkout's editable ``roi_lab`` stays invisible and every
``roi_lab`` import comes from the wheel (checked). Every command then runs from a temporary directory outside the
checkout with a clean environment (no PYTHONPATH, no ROI_LAB_SAMPLE_DIR).
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("setuptools.build_meta", reason="the sdist is built with setuptools (the [test] extra)")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from _server import free_port, health  # noqa: E402

VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "roi_lab" / "__init__.py").read_text(), re.M).group(1)
PHOTOS = ("astronaut", "coffee", "chelsea")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
         check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\n"
                             f"stderr: {proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    hook = "import sys, setuptools.build_meta as backend; print(backend.build_sdist(sys.argv[1]))"
    name = _run([sys.executable, "-c", hook, out], cwd=ROOT).stdout.strip().splitlines()[-1]
    sdist = out / name
    with tarfile.open(sdist) as tar:
        tar.extractall(out / "src", filter="data")
    (src,) = (out / "src").iterdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out / "wheel",
          src], cwd=out)
    (wheel,) = (out / "wheel").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("user")
    prefix = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", prefix], cwd=base)
    python = prefix / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", dists["wheel"]],
         cwd=base)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", purelib], cwd=base).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # torch, streamlit, ...
    (site / "zz_test_environment.pth").write_text("".join(f"{p}\n" for p in ours))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ROI_LAB_SAMPLE_DIR", "PYTHONSTARTUP")}
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    work = base / "elsewhere"  # the user's own directory, outside the checkout
    work.mkdir()
    return {"prefix": prefix, "python": python, "bin": prefix / "bin", "site": site, "env": env, "cwd": work}


def _py(venv, code: str, **kw) -> subprocess.CompletedProcess:
    return _run([venv["python"], "-c", code], cwd=venv["cwd"], env=venv["env"], **kw)


def _wheel_names(dists) -> list[str]:
    with zipfile.ZipFile(dists["wheel"]) as z:
        return z.namelist()


# ------------------------------------------------------------------------------------------ what is in the wheel


def test_wheel_carries_the_app_the_pages_the_samples_and_py_typed(dists):
    names = set(_wheel_names(dists))
    bundled = "roi_lab/_bundled/"
    pages = sorted(p.name for p in (ROOT / "app_pages").glob("*.py"))
    assert len(pages) >= 5  # every page of the checkout; the router routes exactly these (below)
    expected = {
        "roi_lab/py.typed", "roi_lab/__init__.py", "roi_lab/cli.py", "roi_lab/viz.py", "roi_lab_pytest/__init__.py",
        bundled + "streamlit_app.py", bundled + ".streamlit/config.toml", bundled + "benchmarks/bench_roi_align.py",
        *(bundled + "app_pages/" + p for p in pages),
        *(f"{bundled}sample_data/{n}.png" for n in (*PHOTOS, "synthetic_scene")),
        bundled + "sample_data/synthetic_scene.json", bundled + "sample_data/README.md",
    }
    assert expected - names == set()
    # every module of the package is in it
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "roi_lab").rglob("*.py") if "_bundled" not in p.parts}
    assert modules - names == set()
    # the router's pages are the bundled ones (the paths st.navigation resolves next to the entry script)
    with zipfile.ZipFile(dists["wheel"]) as z:
        router = z.read(bundled + "streamlit_app.py").decode()
        assert router == (ROOT / "streamlit_app.py").read_text()  # copied unchanged
    routed = re.findall(r'st\.Page\("(app_pages/[^"]+)"', router)
    assert sorted(routed) == [f"app_pages/{p}" for p in pages]


def test_wheel_leaves_out_tests_results_and_caches(dists):
    names = _wheel_names(dists)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"roi_lab", "roi_lab_pytest", f"roi_lab-{VERSION}.dist-info"}, tops
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if "/tests/" in n or "/results/" in n or n.endswith((".ipynb", "make_synthetic.py"))]
    assert not [n for n in names if "_bundled/benchmarks/" in n and not n.endswith("bench_roi_align.py")]


def test_metadata_core_has_no_web_stack_and_the_extras_do(dists):
    with zipfile.ZipFile(dists["wheel"]) as z:
        meta = email.parser.Parser().parsestr(z.read(f"roi_lab-{VERSION}.dist-info/METADATA").decode())
    assert meta["Version"] == VERSION and meta["License-Expression"] == "BSD-3-Clause"
    requires = meta.get_all("Requires-Dist")
    core = {re.split(r"[<>=!~; \[]", r)[0] for r in requires if "extra ==" not in r}
    assert core == {"torch", "torchvision", "numpy", "opencv-python-headless"}

    def extra(name: str) -> set[str]:
        return {re.split(r"[<>=!~; \[]", r)[0] for r in requires if f'extra == "{name}"' in r}

    assert extra("app") == {"streamlit", "plotly"} and extra("viz") == {"plotly"}
    assert {"onnx", "onnxruntime", "onnxscript"} <= extra("onnx") and "onnxruntime" in extra("bench")
    assert {"pytest", "hypothesis"} <= extra("test")
    assert set(meta.get_all("Provides-Extra")) == {"app", "viz", "onnx", "bench", "test"}


def test_sdist_has_the_sources_the_wheel_is_built_from(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {"pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "CHANGELOG.md", "LICENSE", "streamlit_app.py",
              ".streamlit/config.toml", "sample_data/coffee.png", "sample_data/make_synthetic.py",
              "benchmarks/bench_roi_align.py", "tests/test_wheel.py", "app_pages/3_side_by_side.py",
              ".pre-commit-config.yaml", "examples/notebook.ipynb", "tests/typecheck/public_api.py"}
    assert needed - names == set()
    assert not [n for n in names if n.startswith(("benchmarks/results", "roi_lab/_bundled", ".venv", "build/"))]
    assert not [n for n in names if "__pycache__" in n]


# ------------------------------------------------------------------------------------------ used as a user would


def test_imports_come_from_the_wheel_and_find_the_bundled_photos(venv):
    code = (
        "import json, roi_lab, roi_lab.samples as s; from roi_lab import _bundle\n"
        "image, sample = s.load_sample('coffee')\n"
        "print(json.dumps({'file': roi_lab.__file__, 'installed': _bundle.installed(), 'dir': str(s.sample_dir()),"
        " 'samples': [x.name for x in roi_lab.list_samples()], 'paths': [str(x.path) for x in roi_lab.list_samples()],"
        " 'coffee': list(image.shape)}))"
    )
    out = json.loads(_py(venv, code).stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(venv["site"])), out["file"]
    assert out["installed"] is True
    assert out["samples"] == ["synthetic", *PHOTOS]
    assert all(p.startswith(str(venv["site"])) and Path(p).is_file() for p in out["paths"])
    assert out["coffee"] == [400, 600, 3]


def test_version_has_one_source(venv):
    out = _run([venv["bin"] / "roi-lab", "--version"], cwd=venv["cwd"], env=venv["env"])
    assert out.stdout.strip() == f"roi-lab {VERSION}"
    meta = _py(venv, "import importlib.metadata as m, roi_lab; print(m.version('roi-lab'), roi_lab.__version__)")
    assert meta.stdout.split() == [VERSION, VERSION]


def test_diagnose_a_bundled_samples_boxes(venv):
    sample_json = _py(venv, "from roi_lab.samples import sample_dir; print(sample_dir() / 'synthetic_scene.json')")
    boxes = sample_json.stdout.strip()
    geometry = ["--image-size", "450", "600", "--features", "1", "1024", "29", "38"]
    roi_lab = venv["bin"] / "roi-lab"
    wrong = _run([roi_lab, "diagnose", boxes, *geometry, "--format", "json"], cwd=venv["cwd"], env=venv["env"],
                 check=False)
    assert wrong.returncode == 1, wrong.stderr  # image-pixel boxes at spatial_scale 1: an error finding
    assert json.loads(wrong.stdout)["findings"][0]["code"] == "IMAGE_SPACE_BOXES"
    right = _run([roi_lab, "diagnose", boxes, *geometry, "--spatial-scale", "0.0625"], cwd=venv["cwd"],
                 env=venv["env"], check=False)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "NON_DIVISIBLE_STRIDE" in right.stdout and "ERROR" not in right.stdout


def test_app_serves_from_the_install(venv):
    port = free_port()
    log = venv["cwd"] / "app.log"
    env = {**venv["env"], "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    with open(log, "wb") as out:
        # its own session: roi-lab starts streamlit as a child, and both are stopped together
        proc = subprocess.Popen([str(venv["bin"] / "roi-lab"), "app", "--server.port", str(port),
                                 "--server.address", "127.0.0.1"], cwd=venv["cwd"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            answer = None
            while answer != "ok" and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.3)
                answer = health(port)
            assert answer == "ok", f"no ok from /_stcore/health (exit {proc.poll()}): {log.read_text()[-2000:]}"
        finally:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue


def test_installed_app_runs_on_the_bundled_samples(venv):
    """The server answering is not the app working: run the installed entry point's first page in AppTest."""
    code = (
        "import json\n"
        "from streamlit.testing.v1 import AppTest\n"
        "from roi_lab import _bundle\n"
        "at = AppTest.from_file(str(_bundle.path('streamlit_app.py')), default_timeout=240)\n"
        "for k, v in {'max_side': 192, 'backbone': 'resnet18', 'weights': 'none', 'device': 'cpu'}.items():\n"
        "    at.session_state[k] = v\n"
        "at.run()\n"
        "pick = [s for s in at.selectbox if s.label == 'Sample']\n"
        "print(json.dumps({'exceptions': [e.value for e in at.exception], 'options': pick[0].options if pick else None,"
        " 'title': [t.value for t in at.title]}))"
    )
    out = json.loads(_py(venv, code, timeout=400).stdout.strip().splitlines()[-1])
    assert out["exceptions"] == []
    assert out["title"] == ["Image & backbone"]
    assert len(out["options"]) == 4 and any(o.startswith("Coffee cup") for o in out["options"]), out["options"]


def test_bench_runs_from_the_install_and_writes_into_the_working_directory(venv):
    out = _run([venv["bin"] / "roi-lab", "bench", "--quick", "--cases", "mask_head", "--no-memory"], cwd=venv["cwd"],
               env=venv["env"], timeout=400)
    assert "mask_head" in out.stdout
    result = json.loads((venv["cwd"] / "roi_lab_bench.json").read_text())
    assert "mask_head" in result["results"]
    assert not list(venv["site"].rglob("results"))  # nothing written into site-packages
