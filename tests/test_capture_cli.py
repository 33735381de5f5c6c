"""``roi-lab diagnose CAPTURE.pt`` and ``roi-lab capture script.py [args]``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

from roi_lab.capture import capture, load_capture
from roi_lab.cli import main

FEATURES = torch.zeros(1, 8, 50, 64)  # stride 16 of an 800 x 1024 image
ROIS = torch.tensor([[0.0, 100, 50, 900, 600]])

SCRIPT = """
import sys

import torch
import torchvision

print("argv", sys.argv[1:])
features = torch.zeros(1, 8, 50, 64)
rois = torch.tensor([[0.0, 100, 50, 900, 600]])  # image pixels of an 800 x 1024 image
torchvision.ops.roi_align(features, rois, 7, spatial_scale={scale})
{tail}
"""


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _save(tmp_path, scale):
    with capture(image_size=(800, 1024)) as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7, spatial_scale=scale)
    return str(cap.save(tmp_path / "cap.pt"))


def test_diagnose_a_capture_with_an_error(tmp_path, capsys):
    code, out, err = _run(["diagnose", _save(tmp_path, 1.0)], capsys)
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == "roi_lab capture: 1 call; findings: 1 error(s), 0 warning(s), 0 info(s)"
    assert lines[1].startswith(f"#0 torchvision.ops.roi_align in {__name__}._save (")
    assert lines[3].startswith("    ERROR IMAGE_SPACE_BOXES: The boxes are in image pixels but spatial_scale is 1")
    assert lines[4].startswith("      evidence: max x2 = 900 > map width 64")
    assert lines[5] == (
        "      fix: roi_align(features, rois, output_size, spatial_scale=1 / 16)  # image 800 x 1024 on a 50 x 64 "
        "map: stride 16"
    )


def test_diagnose_a_clean_capture(tmp_path, capsys):
    code, out, _ = _run(["diagnose", _save(tmp_path, 1 / 16)], capsys)
    assert code == 0 and out.splitlines()[-1] == "    ok: nothing looks wrong"


def test_diagnose_a_capture_as_json(tmp_path, capsys):
    code, out, _ = _run(["diagnose", _save(tmp_path, 1.0), "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["has_errors"] is True and data["counts"] == {"error": 1, "warning": 0, "info": 0}
    [call] = data["calls"]
    assert call["op"] == "torchvision.ops.roi_align" and call["spatial_scale"] == 1.0
    assert call["boxes_shape"] == [1, 5] and call["image_size"] == [800, 1024]
    assert [f["code"] for f in call["findings"]] == ["IMAGE_SPACE_BOXES"]


def test_diagnose_recognises_a_capture_without_the_suffix(tmp_path, capsys):
    path = tmp_path / "capture.bin"
    path.write_bytes(Path(_save(tmp_path, 1.0)).read_bytes())
    code, out, _ = _run(["diagnose", str(path)], capsys)
    assert code == 1 and out.startswith("roi_lab capture: 1 call")


def test_diagnose_refuses_an_unreadable_capture(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_text("not a capture")
    code, out, err = _run(["diagnose", str(path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"roi-lab diagnose: load_capture({str(path)!r}) expects a capture file written by")
    assert "got not a torch.save zip archive" in err


def test_diagnose_refuses_geometry_options_with_a_capture(tmp_path, capsys):
    code, _, err = _run(["diagnose", _save(tmp_path, 1.0), "--image-size", "800", "1024"], capsys)
    assert code == 2
    assert err == "roi-lab diagnose: --image-size describe a boxes file; a capture records them per call\n"


def _script(tmp_path, scale="1.0", tail=""):
    path = tmp_path / "detect.py"
    path.write_text(SCRIPT.format(scale=scale, tail=textwrap.dedent(tail)))
    return str(path)


def test_capture_runs_a_script_with_its_arguments(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv_before = list(sys.argv)
    code, out, err = _run(["capture", _script(tmp_path), "--image-size", "7", "x"], capsys)
    assert code == 0
    assert out == "argv ['--image-size', '7', 'x']\n"  # options after the script are the script's
    assert sys.argv == argv_before
    cap = load_capture(tmp_path / "roi_lab_capture.pt")
    [call] = cap.calls
    assert call.op == "torchvision.ops.roi_align" and call.where.startswith("__main__.<module> (")
    assert [f.code for f in call.findings] == ["OUT_OF_BOUNDS"]  # no image size known: the map alone
    assert err.splitlines()[-1] == (
        "roi-lab capture: wrote roi_lab_capture.pt (1 call; 1 error, 0 warning findings); details: roi-lab "
        "diagnose roi_lab_capture.pt"
    )


def test_capture_options_go_before_the_script(tmp_path, capsys):
    out_path = tmp_path / "mine.pt"
    code, _, _ = _run(["capture", "-o", str(out_path), "--image-size", "800", "1024", _script(tmp_path)], capsys)
    assert code == 0
    [call] = load_capture(out_path).calls
    assert call.image_size == (800, 1024) and [f.code for f in call.findings] == ["IMAGE_SPACE_BOXES"]


def test_capture_writes_the_file_when_the_script_crashes(tmp_path, capsys):
    tail = "torchvision.ops.roi_align(features, rois[:, 1:], 7, spatial_scale=1 / 16)  # [K, 4]: raises\n"
    out_path = tmp_path / "crash.pt"
    code, out, err = _run(["capture", "-o", str(out_path), _script(tmp_path, "1 / 16", tail)], capsys)
    assert code == 1
    assert "Traceback (most recent call last):" in err
    assert "AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]" in err
    calls = load_capture(out_path).calls
    assert [c.error for c in calls] == [None, "AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]"]
    assert calls[1].explanation["code"] == "MISSING_BATCH_INDEX"


def test_capture_passes_on_the_scripts_exit_status(tmp_path, capsys):
    code, _, _ = _run(["capture", "-o", str(tmp_path / "c.pt"), _script(tmp_path, tail="sys.exit(3)\n")], capsys)
    assert code == 3 and len(load_capture(tmp_path / "c.pt").calls) == 1


def test_capture_of_a_missing_script(tmp_path, capsys):
    code, _, err = _run(["capture", str(tmp_path / "nope.py")], capsys)
    assert code == 2
    assert err.startswith(
        "roi-lab capture: roi-lab capture expects a Python script to run, e.g. roi-lab capture train.py --epochs 1; "
        f"got {str(tmp_path / 'nope.py')!r}, which is not a file."
    )


@pytest.mark.slow
def test_capture_from_the_command_line(tmp_path):
    # the real entry point, in a fresh interpreter: `python -m roi_lab capture ...` then `... diagnose ...`
    run = subprocess.run(
        [sys.executable, "-m", "roi_lab", "capture", "--image-size", "800", "1024", _script(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    diag = subprocess.run(
        [sys.executable, "-m", "roi_lab", "diagnose", "roi_lab_capture.pt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert diag.returncode == 1 and "ERROR IMAGE_SPACE_BOXES" in diag.stdout, diag.stderr
