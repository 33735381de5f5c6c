"""The capture file: a safe round trip, and clear refusals of missing, oversized, foreign and hostile files."""

from __future__ import annotations

import os
import pickle
import re
import zipfile

import pytest
import torch
import torchvision

from roi_lab.capture import CaptureFileError, capture, load_capture

IMAGE = (800, 1024)
FEATURES = torch.randn(2, 8, 50, 64, generator=torch.Generator().manual_seed(0))
ROIS = torch.tensor([[0.0, 100, 50, 900, 600], [1, 10, 20, 300, 200]])


def _capture(**kwargs):
    with capture(image_size=(128, 128), **kwargs) as cap:
        rois = torch.tensor([[0.0, 10, 20, 120, 100], [1, 0, 0, 60, 64]])
        torchvision.ops.roi_align(FEATURES[:, :, :8, :8], rois, 7, spatial_scale=1.0)  # IMAGE_SPACE_BOXES
        torchvision.ops.MultiScaleRoIAlign(["a", "b"], 7, 2)(
            {"a": FEATURES[:1, :, :32, :32], "b": FEATURES[:1, :, :16, :16]},
            [torch.tensor([[0.0, 0, 40, 40], [0, 0, 120, 110]])],
            [(128, 128)],
        )
        with pytest.raises(AssertionError):
            torchvision.ops.roi_align(FEATURES[:, :, :8, :8], rois[:, 1:], 7, 1 / 16)  # raises: error + explanation
    return cap


def _message(exc: pytest.ExceptionInfo, path) -> str:
    prefix = f"load_capture({str(path)!r}) expects a capture file written by Capture.save (format 'roi_lab.capture' "
    text = str(exc.value)
    assert text.startswith(prefix + "version 1); got "), text
    return text[len(prefix + "version 1); got ") :]


def test_round_trip_keeps_every_field(tmp_path):
    cap = _capture(keep_features=True)
    path = cap.save(tmp_path / "cap.pt")
    plain = torch.load(path, weights_only=True)  # the file needs nothing but tensors and primitives
    assert plain["format"] == "roi_lab.capture" and len(plain["calls"]) == 3
    back = load_capture(path)
    assert not back.active and back.max_bytes == cap.max_bytes and back.image_size == (128, 128)
    assert back.dropped == cap.dropped and back.bytes_kept == cap.bytes_kept
    for a, b in zip(cap.calls, back.calls, strict=True):
        for name in (
            "index",
            "op",
            "where",
            "feature_shape",
            "feature_dtype",
            "device",
            "box_format",
            "output_size",
            "spatial_scale",
            "sampling_ratio",
            "aligned",
            "image_size",
            "image_size_source",
            "image_sizes",
            "scales",
            "level_names",
            "level_shapes",
            "extra",
            "error",
            "explanation",
            "dropped",
            "images",
        ):
            assert getattr(a, name) == getattr(b, name), name
        assert a.findings == b.findings  # saved, not recomputed
        for x, y in ((a.boxes, b.boxes), (a.levels, b.levels), (a.features, b.features)):
            xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
            assert all((p is None and q is None) or torch.equal(p, q) for p, q in zip(xs, ys, strict=True))
    assert [f.code for f in back.findings() if f.severity == "error"] == ["IMAGE_SPACE_BOXES", "MISSING_BATCH_INDEX"]
    assert back.summary() == cap.summary()


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    _capture().save(tmp_path / "cap.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap.pt"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path)
    assert _message(exc, path).startswith("it cannot be opened: No such file or directory.")


def test_directory_and_fifo_are_refused_without_blocking(tmp_path):
    with pytest.raises(CaptureFileError) as exc:
        load_capture(tmp_path)
    assert _message(exc, tmp_path).startswith("not a regular file (a directory, device, FIFO or socket).")
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(CaptureFileError) as exc:
        load_capture(fifo)  # no writer: opening it for reading would block without O_NONBLOCK
    assert _message(exc, fifo).startswith("not a regular file (a directory, device, FIFO or socket).")


def test_oversized_file_is_refused(tmp_path):
    path = _capture(keep_features=True).save(tmp_path / "cap.pt")
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path, max_bytes=1000)
    size = path.stat().st_size
    assert re.match(r"a file of \d+(\.\d)? KiB, over the limit of 1000 B\.\n", _message(exc, path))
    assert str(exc.value).endswith(
        f"load_capture(path, max_bytes={size})  # if you trust this file and have the memory"
    )


def test_archive_declaring_more_than_the_limit_is_refused(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data/0", b"\0" * (8 << 20))  # 8 MiB of zeros compress to a few KiB
    assert path.stat().st_size < 100_000
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path, max_bytes=1 << 20)
    assert _message(exc, path) == "an archive of 1 entries declaring 8 MiB, over the limit of 1 MiB.\n" + (
        "Fix: write it with `with roi_lab.capture() as cap: ...; cap.save(path)` or `roi-lab capture script.py`"
    )


def test_not_a_zip_archive(tmp_path):
    path = tmp_path / "boxes.pt"
    path.write_text("[[0, 1, 2, 3]]")
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path)
    assert _message(exc, path).startswith("not a torch.save zip archive (File is not a zip file).")


class _Hostile:
    """Unpickling this runs a command: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "roi_lab.capture", "version": 1, "calls": [_Hostile(marker)], "images": []}, path)
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path)
    got = _message(exc, path)
    assert got.startswith("torch.load(weights_only=True) refused it (UnpicklingError: ")
    assert "Trying to load unsupported GLOBAL posix.system whose module posix is blocked." in got
    assert str(exc.value).endswith(
        "Fix: only open capture files from a source you trust; a capture holds tensors and primitives only"
    )
    assert not marker.exists()


def test_a_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"format": "roi_lab.capture"}))
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path)
    assert _message(exc, path).startswith("not a torch.save zip archive")


def test_a_torch_file_that_is_not_a_capture(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path)
    assert _message(exc, path).startswith("format None version None.")


@pytest.mark.parametrize(
    ("edit", "got"),
    [
        (lambda s: s["calls"][0].update(op=5), "calls[0].op is int 5, expected a string."),
        (
            lambda s: s["calls"][0].update(spatial_scale="1/16"),
            "calls[0].spatial_scale is str '1/16', expected a number.",
        ),
        (
            lambda s: s["calls"][0].update(boxes=[1, 2]),
            "calls[0].boxes is list [1, 2], expected a tensor or a list of tensors.",
        ),
        (
            lambda s: s["calls"][0].update(findings=[{"code": 1}]),
            "calls[0].findings is list [{'code': 1}], expected a list of findings (dicts of code, severity, message, "
            "...).",
        ),
        (lambda s: s.update(calls={"a": 1}), "no 'calls' and 'images' lists."),
        (lambda s: s["calls"].__setitem__(0, [1]), "calls[0] is list, not a dict."),
    ],
)
def test_malformed_fields_are_named(tmp_path, edit, got):
    path = _capture().save(tmp_path / "cap.pt")
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    with pytest.raises(CaptureFileError) as exc:
        load_capture(path)
    assert _message(exc, path).startswith(got)
