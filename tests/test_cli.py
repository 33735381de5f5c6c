"""Tests for the ``roi-lab diagnose`` and ``roi-lab explain`` commands (in-process, plus real subprocesses)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import roi_lab.cli as cli
from roi_lab.cli import EXIT_FINDINGS, EXIT_NOT_RECOGNISED, EXIT_OK, EXIT_UNREADABLE, main
from roi_lab.diagnose import diagnose

REPO = Path(__file__).resolve().parent.parent
RECORDS = json.loads((Path(__file__).parent / "data" / "error_messages.json").read_text())
K4_TRACEBACK = next(r["text"] for r in RECORDS if r["id"] == "tv_roi_align_k4")

# image 512 x 512, stride-16 map 32 x 32
ROIS_IMAGE = [[0, 10, 20, 200, 300], [0, 50, 60, 400, 500]]
GEOMETRY = ["--image-size", "512", "512", "--features", "1", "256", "32", "32"]


def _write(tmp_path: Path, name: str, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------- diagnose


def test_diagnose_correct_boxes_exit_0(tmp_path, capsys):
    boxes = _write(tmp_path, "boxes.json", ROIS_IMAGE)
    code, out, err = _run(["diagnose", boxes, *GEOMETRY, "--spatial-scale", "0.0625"], capsys)
    assert code == EXIT_OK == 0
    assert out == "OK: nothing looks wrong with these boxes for roi_align.\n"
    assert err == ""


def test_diagnose_image_space_boxes_exit_1(tmp_path, capsys):
    boxes = _write(tmp_path, "boxes.json", ROIS_IMAGE)
    code, out, _ = _run(["diagnose", boxes, *GEOMETRY], capsys)
    assert code == EXIT_FINDINGS == 1
    assert out.startswith("ERROR IMAGE_SPACE_BOXES: ")
    assert "spatial_scale=1 / 16" in out


def test_diagnose_json_matches_the_library(tmp_path, capsys):
    boxes = _write(tmp_path, "boxes.json", [[10, 20, 200, 300]])  # [K, 4]: no batch index
    code, out, _ = _run(["diagnose", boxes, *GEOMETRY, "--spatial-scale", "0.0625", "--format", "json"], capsys)
    report = json.loads(out)
    expected = diagnose([[10, 20, 200, 300]], image_size=(512, 512), features=(1, 256, 32, 32), spatial_scale=0.0625)
    assert code == 1
    assert report == {"op": "roi_align", "has_errors": True, "findings": [f.to_dict() for f in expected]}
    assert report["findings"][0]["code"] == "MISSING_BATCH_INDEX"


def test_diagnose_crop_and_resize_with_box_indices_in_the_file(tmp_path, capsys):
    data = {"boxes": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]], "box_indices": [0, 3]}
    boxes = _write(tmp_path, "boxes.json", data)
    argv = ["diagnose", boxes, "--image-size", "64", "64", "--features", "2", "3", "64", "64"]
    code, out, _ = _run([*argv, "--op", "crop_and_resize", "--format", "json"], capsys)
    codes = [f["code"] for f in json.loads(out)["findings"] if f["severity"] == "error"]
    assert code == 1 and codes == ["BATCH_INDEX_OUT_OF_RANGE"]

    indices = _write(tmp_path, "indices.json", [0, 1])  # --box-indices overrides the file's
    code, out, _ = _run([*argv, "--op", "crop_and_resize", "--box-indices", indices], capsys)
    assert code == 0, out


def test_diagnose_reads_a_coco_file(tmp_path, capsys):
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 512, "width": 512}],
        "annotations": [{"image_id": 1, "bbox": [10, 20, 190, 280], "category_id": 1}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    path = _write(tmp_path, "coco.json", coco)
    assert _run(["diagnose", path, *GEOMETRY, "--spatial-scale", "0.0625"], capsys)[0] == 0
    code, out, _ = _run(["diagnose", path, *GEOMETRY], capsys)  # scale left at 1
    assert code == 1 and "IMAGE_SPACE_BOXES" in out


def test_diagnose_missing_file_exit_2(tmp_path, capsys):
    code, out, err = _run(["diagnose", str(tmp_path / "nope.json"), *GEOMETRY], capsys)
    assert code == EXIT_UNREADABLE == 2
    assert out == ""
    assert err == f"roi-lab diagnose: cannot read {tmp_path / 'nope.json'}: No such file or directory\n"


def test_diagnose_invalid_json_exit_2(tmp_path, capsys):
    path = _write(tmp_path, "boxes.json", "[[1, 2, 3, 4],\n [5, 6")
    code, _, err = _run(["diagnose", path, *GEOMETRY], capsys)
    assert code == 2
    assert err.startswith(f"roi-lab diagnose: BOXES {path} is not valid JSON: ")
    assert "line 2" in err and "Traceback" not in err


def test_diagnose_malformed_box_file_exit_2(tmp_path, capsys):
    path = _write(tmp_path, "ann.xml", "<annotation><object><name>cat</name></object>")
    code, _, err = _run(["diagnose", path, *GEOMETRY], capsys)
    assert code == 2
    assert err.startswith(f"roi-lab diagnose: cannot read boxes from {path}: ")
    assert "Traceback" not in err


def test_diagnose_bad_box_indices_file_exit_2(tmp_path, capsys):
    boxes = _write(tmp_path, "boxes.json", [[0.1, 0.1, 0.5, 0.5]])
    indices = _write(tmp_path, "indices.json", "zero")
    argv = ["diagnose", boxes, *GEOMETRY, "--op", "crop_and_resize", "--box-indices", indices]
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.startswith(f"roi-lab diagnose: --box-indices {indices} is not valid JSON")


def test_diagnose_reports_garbage_boxes_instead_of_crashing(tmp_path, capsys):
    boxes = _write(tmp_path, "boxes.json", {"boxes": "ten boxes"})
    code, out, _ = _run(["diagnose", boxes, *GEOMETRY], capsys)
    assert code == 1 and "ERROR" in out


def test_diagnose_requires_the_geometry(tmp_path, capsys):
    boxes = _write(tmp_path, "boxes.json", ROIS_IMAGE)
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", boxes, "--features", "1", "256", "32", "32"])
    assert exc.value.code == 2
    assert "--image-size" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- explain


def test_explain_from_file(tmp_path, capsys):
    path = _write(tmp_path, "error.txt", K4_TRACEBACK)
    code, out, _ = _run(["explain", path], capsys)
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0] == "MISSING_BATCH_INDEX (torchvision)"
    assert lines[1] == "  matched: AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]"
    assert lines[2].startswith("  cause: a single boxes tensor must be Tensor[K, 5]")
    assert lines[3].startswith("  fix: rois = torch.cat(")


def test_explain_from_stdin_as_json(monkeypatch, capsys):
    text = "InvalidArgumentError: crop_size must have two elements[3] [Op:CropAndResize]"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, out, _ = _run(["explain", "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out) == {
        "code": "CROP_SIZE",
        "framework": "tensorflow",
        "cause": "crop_size has 3 elements; it must be exactly two, [crop_height, crop_width].",
        "fix": "crop_size=[7, 7]",
        "matched": text,
        "note": "",
    }


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_explain_not_recognised_exit_3(monkeypatch, capsys, fmt):
    monkeypatch.setattr(sys, "stdin", io.StringIO("KeyError: 'category'\n"))
    code, out, _ = _run(["explain", "-", "--format", fmt], capsys)
    assert code == EXIT_NOT_RECOGNISED == 3
    expected = (
        "null\n"
        if fmt == "json"
        else ("Not recognised: this does not look like an ROI pooling input error that roi-lab knows.\n")
    )
    assert out == expected


def test_explain_missing_file_exit_2(tmp_path, capsys):
    code, out, err = _run(["explain", str(tmp_path / "log.txt")], capsys)
    assert code == 2 and out == ""
    assert err == f"roi-lab explain: cannot read {tmp_path / 'log.txt'}: No such file or directory\n"


@pytest.mark.parametrize(("command", "words"), [("explain", "3 not recognised"), ("diagnose", "1 at least one error")])
def test_help_documents_exit_status(capsys, command, words):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert words in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------------------------- real processes


def test_entry_point_explain_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "roi_lab", "explain"],
        input=K4_TRACEBACK,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MISSING_BATCH_INDEX (torchvision)\n")


def test_entry_point_diagnose_subprocess(tmp_path):
    boxes = _write(tmp_path, "boxes.json", ROIS_IMAGE)
    proc = subprocess.run(
        [sys.executable, "-m", "roi_lab", "diagnose", boxes, *GEOMETRY, "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["findings"][0]["code"] == "IMAGE_SPACE_BOXES"


@pytest.mark.parametrize("command", ["app", "bench"])
@pytest.mark.parametrize("extra", [["--quick", "--threads", "1"], ["--", "--quick"], []])
def test_app_and_bench_pass_options_through(monkeypatch, command, extra):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert cli.main([command, *extra]) == 0
    expected = extra[1:] if extra[:1] == ["--"] else extra
    if expected:
        assert calls[0][-len(expected) :] == expected
    else:  # nothing after the script (benchmark) or the app file
        assert calls[0][-1].endswith(".py")


def test_other_commands_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", "--quick"])
    assert e.value.code == 2 and "unrecognized arguments: --quick" in capsys.readouterr().err


def test_diagnose_mixed_defaults(tmp_path, capsys):
    rois = _write(tmp_path, "rois.json", [[0, 10, 20, 200, 300]])
    argv = ["diagnose", rois, *GEOMETRY, "--spatial-scale", "0.0625", "--trained-with", "mmcv"]
    code, out, _ = _run([*argv, "--aligned", "false", "--sampling-ratio", "-1"], capsys)
    assert code == EXIT_OK  # a warning, not an error
    assert out.startswith("WARNING MIXED_DEFAULTS: The head was trained with mmcv's pooler")
    assert "half a cell at spatial_scale 1/16 is 8 image px" in out
    code, out, _ = _run([*argv, "--aligned", "true", "--sampling-ratio", "0"], capsys)
    assert "MIXED_DEFAULTS" not in out
