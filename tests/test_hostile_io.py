"""Unbounded reads: the CLI and read_bounded refuse devices, FIFOs, directories and oversized files at once,
with exit 2 and one line on stderr; stdin is read up to the cap and no further.

A FIFO without a writer used to block the open forever: those tests run the CLI in a thread with a deadline
and, should it block, open the FIFO's write end so the thread (and the suite) can go on.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from roi_lab._io import FileRefused, read_bounded, read_stdin_bounded
from roi_lab._limits import MAX_BOX_FILE_BYTES, MAX_TEXT_FILE_BYTES
from roi_lab.cli import main

GEOMETRY = ["--image-size", "64", "64", "--features", "1", "8", "4", "4"]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
needs_dev = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _fifo(tmp_path: Path, name: str = "pipe.json") -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def _run_with_deadline(argv, fifo: Path | None, seconds: float = 30.0) -> int | None:
    """main(argv) in a thread; None if it has not returned within ``seconds`` (then the FIFO is unblocked)."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() and fifo is not None:  # blocked in open(): a writer lets it return
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        return None
    return result[0] if result else None


# --------------------------------------------------------------------------- read_bounded
@needs_dev
@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_read_bounded_refuses_character_devices(path):
    if not Path(path).exists():
        pytest.skip(f"no {path}")
    with pytest.raises(FileRefused) as info:
        read_bounded(path, limit=1024, what="box file", where="test")
    assert info.value.reason == "a character device (like /dev/zero), which can stream without end"
    assert str(info.value) == (f"test expects a regular file as the box file; got '{path}', a character device "
                               "(like /dev/zero), which can stream without end.\n"
                               "Fix: save the content to a regular file first and pass its path")


@needs_fifo
def test_read_bounded_refuses_a_fifo_without_blocking(tmp_path):
    fifo = _fifo(tmp_path)
    with pytest.raises(FileRefused) as info:  # O_NONBLOCK: the open returns at once, fstat says FIFO
        read_bounded(fifo, limit=1024, what="box file")
    assert info.value.reason == "a FIFO (named pipe), which can block or stream without end"


def test_read_bounded_refuses_directories_missing_files_and_odd_names(tmp_path):
    cases = {str(tmp_path): "a directory", str(tmp_path / "nope.json"): "No such file or directory",
             "a" * 300: "File name too long", "bad\x00name": "embedded null byte"}
    for path, reason in cases.items():
        with pytest.raises(FileRefused) as info:
            read_bounded(path, limit=1024, what="box file")
        assert info.value.reason == reason, path


def test_read_bounded_size_cap_is_exact(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 1024)
    assert read_bounded(path, limit=1024, what="box file") == b"x" * 1024
    with pytest.raises(FileRefused) as info:
        read_bounded(path, limit=1023, what="box file")
    assert info.value.reason == "1,024 bytes, over the 1,023 bytes limit for box files"


def test_read_bounded_follows_a_symlink_to_a_device(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    link = tmp_path / "boxes.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(FileRefused, match="a character device"):
        read_bounded(link, limit=1024, what="box file")


def test_read_stdin_bounded_stops_at_the_cap():
    class Endless(io.RawIOBase):  # /dev/zero as a stream object
        def readable(self):
            return True

        def readinto(self, b):
            b[:] = b"\x00" * len(b)
            return len(b)

    with pytest.raises(FileRefused) as info:
        read_stdin_bounded(limit=4096, what="error text", stream=io.BufferedReader(Endless()))
    assert info.value.reason == "more than the 4,096 bytes limit for error texts (an endless stream?)"
    assert read_stdin_bounded(limit=4, what="error text", stream=io.BytesIO(b"abcd")) == b"abcd"


# --------------------------------------------------------------------------- the CLI: exit 2, one line
@needs_dev
@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["diagnose", "/dev/zero", *GEOMETRY], "roi-lab diagnose: cannot read /dev/zero: a character device"),
        (["diagnose", "/dev/urandom", *GEOMETRY], "roi-lab diagnose: cannot read /dev/urandom: a character device"),
        (["diagnose", "/dev/zero.xml", *GEOMETRY], "roi-lab diagnose: cannot read /dev/zero.xml: No such file"),
        (["explain", "/dev/zero"], "roi-lab explain: cannot read /dev/zero: a character device"),
    ],
    ids=["diagnose-zero", "diagnose-urandom", "diagnose-missing-xml", "explain-zero"],
)
def test_cli_refuses_devices_with_exit_2_and_one_line(argv, prefix, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith(prefix) and err.count("\n") == 1 and "Traceback" not in err


@needs_dev
def test_cli_refuses_box_indices_from_a_device(tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[[0.1, 0.1, 0.5, 0.5]]")
    code, _, err = _run(["diagnose", str(boxes), *GEOMETRY, "--op", "crop_and_resize", "--box-indices",
                         "/dev/zero"], capsys)
    assert code == 2
    assert err == ("roi-lab diagnose: cannot read /dev/zero: a character device (like /dev/zero), which can stream "
                   "without end\n")


@needs_fifo
@pytest.mark.parametrize("command", ["diagnose", "explain", "box-indices", "xml"])
def test_cli_refuses_a_fifo_without_a_writer_instead_of_blocking(tmp_path, capsys, command):
    fifo = _fifo(tmp_path, "pipe.xml" if command == "xml" else "pipe.json")
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[[0.1, 0.1, 0.5, 0.5]]")
    argv = {
        "diagnose": ["diagnose", str(fifo), *GEOMETRY],
        "xml": ["diagnose", str(fifo), *GEOMETRY],
        "explain": ["explain", str(fifo)],
        "box-indices": ["diagnose", str(boxes), *GEOMETRY, "--op", "crop_and_resize", "--box-indices", str(fifo)],
    }[command]
    code = _run_with_deadline(argv, fifo)
    err = capsys.readouterr().err
    assert code == 2, "blocked on the FIFO" if code is None else err
    assert err == f"roi-lab {argv[0]}: cannot read {fifo}: a FIFO (named pipe), which can block or stream without end\n"


@needs_dev
@pytest.mark.parametrize("command, limit", [("explain", MAX_TEXT_FILE_BYTES), ("diagnose", MAX_BOX_FILE_BYTES)])
def test_cli_stdin_from_dev_zero_is_cut_at_the_cap(monkeypatch, capsys, command, limit):
    with open("/dev/zero", "rb") as zero:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(zero))
        argv = ["explain", "-"] if command == "explain" else ["diagnose", "-", *GEOMETRY]
        code, _, err = _run(argv, capsys)
    assert code == 2
    what = "error texts" if command == "explain" else "box files"
    assert err.startswith(f"roi-lab {command}: cannot read stdin: more than the {limit / 2**20:.1f} MiB limit for "
                          f"{what} (an endless stream?); ")
    assert err.count("\n") == 1


def test_cli_refuses_an_oversized_box_file_without_reading_it(tmp_path, capsys):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(200 * 2**20)  # sparse: no disk, and fstat refuses it before a read
    code, _, err = _run(["diagnose", str(path), *GEOMETRY], capsys)
    assert code == 2
    assert err == (f"roi-lab diagnose: cannot read {path}: 200.0 MiB, over the 8.0 MiB limit for box files; keep one "
                   "image's boxes in the file (e.g. extract its COCO annotations with pycocotools or jq)\n")


def test_cli_reads_a_json_box_file_with_a_utf8_bom(tmp_path, capsys):
    path = tmp_path / "boxes.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([[0, 8, 8, 40, 40]]).encode())  # Windows editors write a BOM
    code, out, err = _run(["diagnose", str(path), *GEOMETRY, "--spatial-scale", "0.0625"], capsys)
    assert err == "" and code == 0, out


def test_cli_reads_a_voc_file_once_through_the_bounded_reader(tmp_path, capsys, monkeypatch):
    path = tmp_path / "ann.xml"
    path.write_text("<annotation><object><name>cat</name><bndbox><xmin>8</xmin><ymin>8</ymin><xmax>40</xmax>"
                    "<ymax>40</ymax></bndbox></object></annotation>")
    calls = []
    import roi_lab._io as io_mod

    real = io_mod.read_bounded
    monkeypatch.setattr(io_mod, "read_bounded", lambda *a, **k: calls.append(a) or real(*a, **k))
    code, out, err = _run(["diagnose", str(path), *GEOMETRY, "--spatial-scale", "0.0625"], capsys)
    assert (code, err) == (0, "") and len(calls) == 1, out


def test_cli_nested_json_and_huge_integers_exit_2(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = _run(["diagnose", str(deep), *GEOMETRY], capsys)
    assert code == 2 and err == (f"roi-lab diagnose: BOXES {deep} is JSON nested too deeply to read (box files nest "
                                 "3 or 4 levels)\n")
    digits = tmp_path / "digits.json"
    digits.write_text("[[" + "9" * 5000 + ", 0, 0, 1, 1]]")
    code, _, err = _run(["diagnose", str(digits), *GEOMETRY], capsys)
    assert code == 2 and err == (f"roi-lab diagnose: BOXES {digits} holds an integer of thousands of digits; write "
                                 "plain numbers\n")


# --------------------------------------------------------------------------- a generated corpus of hostile paths
def _corpus(tmp_path: Path) -> dict[str, Path]:
    paths = {"dir": tmp_path, "missing": tmp_path / "missing.json", "empty": tmp_path / "empty.json",
             "sparse": tmp_path / "sparse.txt", "loop": tmp_path / "loop.json"}
    paths["empty"].write_bytes(b"")
    with open(paths["sparse"], "wb") as f:
        f.truncate(MAX_BOX_FILE_BYTES + 1)
    paths["loop"].symlink_to(paths["loop"])
    if hasattr(os, "mkfifo"):
        paths["fifo"] = _fifo(tmp_path, "fifo.txt")
    for dev in ("/dev/zero", "/dev/urandom", "/dev/null", "/dev/full"):
        if Path(dev).exists():
            paths[dev] = tmp_path / (Path(dev).name + ".json")
            paths[dev].symlink_to(dev)
    return paths


def test_hostile_path_corpus_every_reader_refuses_in_one_line(tmp_path, capsys):
    """Every path of the corpus through every reader (diagnose BOXES, --box-indices, explain FILE, read_boxes):
    exit 2 with one line, or a BoxFileError, and no blocking."""
    from roi_lab.boxes import read_boxes
    from roi_lab.errors import BoxFileError

    boxes = tmp_path / "ok.json"
    boxes.write_text("[[0.1, 0.1, 0.5, 0.5]]")
    for name, path in _corpus(tmp_path).items():
        for argv in (["diagnose", str(path), *GEOMETRY], ["explain", str(path)],
                     ["diagnose", str(boxes), *GEOMETRY, "--op", "crop_and_resize", "--box-indices", str(path)]):
            code = _run_with_deadline(argv, path if name == "fifo" else None)
            err = capsys.readouterr().err
            if name == "empty" and argv[0] == "explain":
                assert code == 3, err  # an empty text is "not recognised", not unreadable
                continue
            assert code == 2, (name, argv, err)
            assert err.count("\n") == 1 and err.startswith(f"roi-lab {argv[0]}: "), (name, err)
        with pytest.raises(BoxFileError):
            read_boxes(path, image_size=(10, 10))


def test_cli_box_file_holding_a_path_is_read_as_content_not_followed(tmp_path, capsys):
    """A .txt box file whose one line is a path: YOLO text (refused as such), never the file it names."""
    secret = tmp_path / "other.txt"
    secret.write_text("0 0.5 0.5 0.25 0.25\n")
    boxes = tmp_path / "labels.txt"
    boxes.write_text(str(secret))  # no newline: read as text, it could pass for a path
    code, _, err = _run(["diagnose", str(boxes), *GEOMETRY], capsys)
    assert code == 2 and "read_boxes (yolo line 1) expects 5 fields" in err
