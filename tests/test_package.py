"""The package: the public namespace, one version source, the bundled files, `roi-lab app` / `bench` / `--version`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import roi_lab
from roi_lab import _bundle, cli, samples


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


# ------------------------------------------------------------------------------------------ release hygiene

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_source():
    """pyproject.toml has no version of its own: setuptools reads roi_lab.__version__ (without importing it)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "roi_lab.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", roi_lab.__version__)
    assert project["project"]["license"] == "BSD-3-Clause"  # an SPDX expression, not the deprecated table


def test_changelog_has_the_version_and_the_first_release():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    release = re.match(r"\d+\.\d+\.\d+", roi_lab.__version__).group(0)
    assert re.search(rf"^## .*\b{re.escape(release)}\b", changelog, re.M), f"no CHANGELOG section for {release}"
    assert re.search(r"^## \[?0\.1\.0\]?", changelog, re.M)


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"roi-lab {roi_lab.__version__}\n"


# ------------------------------------------------------------------------------------------ bundled files


def test_bundle_in_a_checkout_is_the_checkout():
    assert not _bundle.installed()
    assert _bundle.root() == ROOT
    assert _bundle.path("app_pages/3_side_by_side.py") == ROOT / "app_pages" / "3_side_by_side.py"
    assert samples.sample_dir() == ROOT / "sample_data"


def test_missing_bundle_says_how_to_reinstall(monkeypatch, tmp_path):
    monkeypatch.setattr(_bundle, "_CHECKOUT", tmp_path)  # neither a wheel's _bundled/ nor a checkout
    with pytest.raises(_bundle.BundleMissing) as e:
        _bundle.root()
    assert str(e.value) == (
        f"roi_lab has no _bundled/ folder (the app and samples a wheel carries) and {tmp_path} is not a source "
        "checkout; reinstall it from a wheel or the sdist: pip install --force-reinstall 'roi-lab[app]'"
    )
    assert samples.sample_dir().name == "sample_data" and not samples.sample_dir().exists()
    assert [s.name for s in samples.list_samples()] == ["synthetic"]  # generated: always there
    assert cli.main(["bench"]) == 2


def test_missing_bundled_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "streamlit_app.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setattr(_bundle, "_CHECKOUT", tmp_path)
    with pytest.raises(_bundle.BundleMissing, match="benchmarks/bench_roi_align.py is missing: roi_lab's bundled"):
        _bundle.path("benchmarks/bench_roi_align.py")


# ------------------------------------------------------------------------------------------ roi-lab app / bench


def test_app_config_becomes_flags_unless_the_environment_sets_them(monkeypatch, tmp_path):
    # a config of the app's kind, written here: the app's own values may change (upload size for captures)
    config = tmp_path / "config.toml"
    config.write_text(
        '[server]\nheadless = true\nmaxUploadSize = 50  # MiB\n\n[runner]\npostScriptGC = false\n\n'
        '[theme]\nbase = "light"\n'
    )
    monkeypatch.delenv("STREAMLIT_SERVER_MAX_UPLOAD_SIZE", raising=False)
    monkeypatch.delenv("STREAMLIT_RUNNER_POST_SCRIPT_GC", raising=False)
    flags = cli._config_flags(config)
    assert "--runner.postScriptGC=false" in flags and "--server.maxUploadSize=50" in flags
    assert "--theme.base=light" in flags and "--server.headless=true" in flags
    monkeypatch.setenv("STREAMLIT_SERVER_MAX_UPLOAD_SIZE", "10")
    flags = cli._config_flags(config)
    assert not [f for f in flags if f.startswith("--server.maxUploadSize")]
    assert "--runner.postScriptGC=false" in flags
    assert cli._config_flags(ROOT / "no_such_config.toml") == []
    # the app's own config: every setting becomes a flag
    monkeypatch.delenv("STREAMLIT_SERVER_MAX_UPLOAD_SIZE")
    app_flags = cli._config_flags(ROOT / ".streamlit" / "config.toml")
    assert "--runner.postScriptGC=false" in app_flags and "--server.headless=true" in app_flags
    assert [f for f in app_flags if f.startswith("--server.maxUploadSize=")]


def test_app_runs_streamlit_on_the_router_with_the_config(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert cli.main(["app", "--server.port", "8600"]) == 0
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    app = cmd.index(str(ROOT / "streamlit_app.py"))
    assert cmd[app + 1 :] == ["--server.port", "8600"]  # the user's options last: they win
    assert "--runner.postScriptGC=false" in cmd[4:app]


def test_bench_from_an_install_writes_into_the_working_directory(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert cli.main(["bench", "--quick"]) == 0  # a checkout: the benchmark's own default (benchmarks/results/)
    assert calls[-1] == [sys.executable, str(ROOT / "benchmarks" / "bench_roi_align.py"), "--quick"]
    monkeypatch.setattr(_bundle, "installed", lambda: True)
    assert cli.main(["bench", "--quick"]) == 0
    assert calls[-1][2:] == ["--out", "roi_lab_bench.json", "--quick"]
    assert cli.main(["bench", "--out=x.json"]) == 0
    assert calls[-1][2:] == ["--out=x.json"]


# ------------------------------------------------------------------------------------------ docs and hooks


def test_pre_commit_runs_ruff_at_least_the_tested_version():
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    rev = re.search(r"repo: https://github.com/astral-sh/ruff-pre-commit\n\s+rev: v(\d+)\.(\d+)\.(\d+)\n", config)
    assert rev, "no pinned ruff-pre-commit repo"
    assert re.search(r"hooks:\n\s+- id: ruff\n", config[rev.end() :])
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (minimum,) = [re.match(r"ruff>=(\d+)\.(\d+)", r).groups() for r in test_extra if r.startswith("ruff")]
    assert tuple(int(v) for v in rev.groups()[:2]) >= tuple(int(v) for v in minimum)


def test_readme_install_section_serves_the_three_audiences_with_real_extras():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install") :]
    section = section[: section.index("\n## ", 1)]
    for command in ("pip install 'roi-lab[app]'", "roi-lab app", "pip install roi-lab\n", "roi-lab diagnose",
                    "make run", "make test", "roi-lab --version"):
        assert command in section, command
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert set(re.findall(r"`\[(\w+)\]`", section)) == extras
