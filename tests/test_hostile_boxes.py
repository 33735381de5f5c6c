"""Hostile box files: every malformed file is a BoxFileError (never RecursionError, OverflowError, TypeError,
KeyError or OSError), files and box counts are capped, and write_boxes writes only what read_boxes reads back.

Bounded Hypothesis campaigns: random JSON documents (COCO-shaped and not) and random text through read_boxes;
random boxes and labels through write_boxes -> read_boxes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roi_lab._limits import MAX_BOX_FILE_BYTES, MAX_BOXES
from roi_lab.boxes import read_boxes, write_boxes
from roi_lab.errors import BoxFileError, InputValueError

COCO_FIX = 'Fix: COCO is {"images": [...], "annotations": [{"image_id": 1, "bbox": [x, y, w, h], ...}], ...}'


def _refused(source, **kwargs) -> str:
    with pytest.raises(BoxFileError) as info:
        read_boxes(source, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- uncaught exceptions, one each
def test_deeply_nested_json_is_a_box_file_error():
    msg = _refused("[" * 100_000 + "]" * 100_000)  # was RecursionError
    assert msg == ("read_boxes (json) expects JSON nested at most a few hundred levels deep; got deeper nesting.\n"
                   "Fix: box files nest 3 or 4 levels: check how the file was written")


def test_integer_of_5000_digits_is_a_box_file_error():
    msg = _refused('{"boxes": [[' + "9" * 5000 + ", 0, 1, 1]]}")  # was ValueError from json
    assert msg.startswith("read_boxes (json) expects numbers of ordinary size; got an integer of thousands of digits")


def test_integer_of_400_digits_is_a_box_file_error():
    msg = _refused('{"boxes": [[' + "9" * 400 + ", 0, 1, 1]]}")  # was OverflowError in math.isfinite
    assert msg.startswith("read_boxes (json boxes[0][0]) expects a finite number; got int <int of 1329 bits>.")


def test_numbers_beyond_float32_are_refused_not_returned_as_inf():
    msg = _refused('{"boxes": [[1e300, 0, 1, 1]]}')  # was a silent inf in the float32 boxes
    assert "expects a number within float32 range (|v| <= 3.403e+38); got float 1e+300" in msg
    msg = _refused(json.dumps({"annotations": [{"bbox": [3e38, 0, 3e38, 1]}]}))
    assert "read_boxes (coco annotations[0].bbox) expects x + width and y + height within float32 range" in msg


@pytest.mark.parametrize(
    "coco, where, got",
    [
        ({"annotations": [], "categories": 5}, "coco field 'categories'", "int 5"),
        ({"annotations": [], "images": 5}, "coco field 'images'", "int 5"),
        ({"annotations": [{"bbox": [1, 2, 3, 4]}], "images": {"id": 1}}, "coco field 'images'", "dict {'id': 1}"),
        ({"annotations": [{"bbox": [1, 2, 3, 4], "category_id": [1]}]}, "coco annotations[0].category_id",
         "list [1]"),
        ({"annotations": [], "categories": [{"id": [1], "name": "a"}]}, "coco categories[0].id", "list [1]"),
    ],
    ids=["categories-int", "images-int", "images-dict", "category_id-list", "category-id-list"],
)
def test_coco_fields_of_the_wrong_type_are_box_file_errors(coco, where, got):
    msg = _refused(json.dumps(coco))  # were TypeError / KeyError
    assert msg.startswith(f"read_boxes ({where}) expects ")
    assert f"; got {got}." in msg
    assert msg.endswith(COCO_FIX)


def test_coco_category_name_that_is_not_text_is_refused():
    msg = _refused(json.dumps({"annotations": [], "categories": [{"id": 1, "name": [[["a"]]]}]}))
    assert msg.startswith("read_boxes (coco categories[0].name) expects a label as text (or a number)")


def test_json_labels_that_are_not_text_are_refused():
    msg = _refused(json.dumps({"boxes": [[0, 0, 1, 1]], "labels": [{"name": "cat"}]}))
    assert msg.startswith("read_boxes (json labels[0]) expects a label as text (or a number); got dict")


def test_path_string_of_300_characters_is_not_an_oserror():
    """Path("a" * 300).is_file() raises OSError (name too long): such a string is text, or a missing file."""
    msg = _refused("a" * 300, image_size=(10, 10))
    assert msg.startswith("read_boxes (yolo line 1) expects 5 fields 'class cx cy w h'; got 1 fields: 'aaaa")
    msg = _refused("a" * 300 + ".json")
    assert msg.startswith("read_boxes(source=...) expects an existing box file (or the file's text); got str 'aaa")


def test_svg_is_refused_naming_the_expected_formats():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect width="5"/></svg>'
    msg = _refused(svg)  # was zero boxes, silently
    assert msg.startswith("read_boxes (voc) expects a Pascal VOC document (<annotation> with <object> elements), "
                          "or a COCO / plain JSON or YOLO txt file; got an XML document whose root element is "
                          "<{http://www.w3.org/2000/svg}svg> (an SVG image?).")


@pytest.mark.parametrize("data, got", [(b"", "an empty file"), (b" \n\t\n", "a file of only whitespace")])
def test_empty_box_file_is_refused_when_the_format_is_detected(data, got):
    msg = _refused(data)  # was zero boxes, silently
    assert msg.startswith(f"read_boxes (auto) expects a COCO / plain JSON, Pascal VOC XML or YOLO txt box file; "
                          f"got {got}.")
    assert "reads as zero boxes with fmt='yolo'" in msg
    assert read_boxes(data, "yolo", image_size=(10, 10)).boxes_image.shape == (0, 4)


# --------------------------------------------------------------------------- bounded sizes
def test_box_file_over_the_size_cap_is_refused_without_reading(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(200 * 2**20)  # sparse: 200 MB that cost no disk and, refused by fstat, no memory
    msg = _refused(path)
    assert msg == (f"read_boxes(source=...) expects a box file of at most 8.0 MiB; got {str(path)!r} of 200.0 MiB.\n"
                   "Fix: keep one image's boxes in the file (e.g. extract its COCO annotations with pycocotools or jq)")
    msg = _refused(str(path))
    assert "of 200.0 MiB" in msg


def test_box_file_text_or_bytes_over_the_size_cap_is_refused():
    data = b" " * (MAX_BOX_FILE_BYTES + 1)
    msg = _refused(data)
    assert msg.startswith(f"read_boxes(source=...) expects a box file of at most 8.0 MiB; got {len(data):,} bytes.")
    assert "characters" in _refused(data.decode())


@pytest.mark.parametrize("fmt", ["yolo", "json", "coco", "voc"])
def test_more_boxes_than_the_cap_are_refused(monkeypatch, fmt):
    monkeypatch.setattr("roi_lab.boxes.MAX_BOXES", 50)  # 100,001 VOC objects would not fit in the size cap
    n = 51
    if fmt == "yolo":
        text = "0 0.5 0.5 0.1 0.1\n" * n
    elif fmt == "json":
        text = json.dumps({"boxes": [[0, 0, 1, 1]] * n})
    elif fmt == "coco":
        text = json.dumps({"annotations": [{"bbox": [0, 0, 1, 1]}] * n})
    else:
        obj = "<object><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>1</xmax><ymax>1</ymax></bndbox></object>"
        text = "<annotation>" + obj * n + "</annotation>"
    msg = _refused(text, image_size=(10, 10))
    assert "expects at most 50 boxes (one image's boxes); got more than 50.\nFix: split the file" in msg
    monkeypatch.setattr("roi_lab.boxes.MAX_BOXES", 51)
    assert read_boxes(text, image_size=(10, 10)).boxes_image.shape == (51, 4)


def test_the_real_box_cap_is_100000():
    msg = _refused("0 0.5 0.5 0.1 0.1\n" * (MAX_BOXES + 1), image_size=(10, 10))
    assert "expects at most 100,000 boxes (one image's boxes); got more than 100,000." in msg


def test_a_box_file_at_the_size_cap_is_read(tmp_path):
    line = "0 0.5 0.5 0.1 0.1\n"
    text = line * 1000
    path = tmp_path / "labels.txt"
    path.write_text(text + " " * (MAX_BOX_FILE_BYTES - len(text)))
    assert read_boxes(path, image_size=(10, 10)).boxes_image.shape == (1000, 4)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "dir", "fifo"])
def test_read_boxes_refuses_paths_that_are_not_regular_files(tmp_path, special):
    if special == "dir":
        path = tmp_path
    elif special == "fifo":
        if not hasattr(__import__("os"), "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        path = tmp_path / "pipe.txt"
        __import__("os").mkfifo(path)
    else:
        path = Path(special)
        if not path.exists():
            pytest.skip(f"no {special} here")
    msg = _refused(path)
    assert msg.startswith(f"read_boxes(source=...) expects a regular file as the box file; got {str(path)!r}, ")
    assert msg.endswith("Fix: save the content to a regular file first and pass its path")


# --------------------------------------------------------------------------- write_boxes: only what reads back
def test_yolo_box_centred_outside_the_image_is_refused_at_write_time():
    box = torch.tensor([[100.0, 0.0, 120.0, 10.0]])  # cx = 110 / 100 = 1.1: read_boxes refuses such a line
    with pytest.raises(InputValueError) as info:
        write_boxes(box, "yolo", image_size=(100, 100), labels=["1"])
    msg = str(info.value)
    assert msg.startswith("write_boxes(boxes_image=...) expects boxes whose YOLO centre and size lie in [0, 1] of the "
                          "image (read_boxes refuses others); got 1 box(es), rows 0, the first [100.0, 0.0, 120.0, "
                          "10.0] -> cx, cy, w, h = [1.1, 0.05, 0.2, 0.1] for a 100 x 100 image.")
    assert "export as json / coco, which keep any box" in msg
    text = write_boxes(box, "json", image_size=(100, 100))  # json keeps it
    assert torch.equal(read_boxes(text).boxes_image, box)


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_inverted_box_is_refused_at_write_time_for_coco_and_voc(fmt):
    with pytest.raises(InputValueError, match=rf"expects x2 >= x1 and y2 >= y1 for {fmt.upper()} \(read_boxes "
                                              r"refuses inverted boxes\); got 1 box\(es\), rows 1 inverted"):
        write_boxes([[0, 0, 1, 1], [10, 10, 5, 5]], fmt, image_size=(100, 100))


@pytest.mark.parametrize("label", ["", " cat", "cat\n", "a\x01b"])
def test_voc_label_that_would_not_read_back_is_refused(label):
    with pytest.raises(InputValueError) as info:
        write_boxes([[0, 0, 1, 1]], "voc", image_size=(10, 10), labels=[label])
    assert str(info.value).startswith("write_boxes(labels=...) expects VOC names that read back as written: not empty, "
                                      f"no leading or trailing spaces, no control characters; got labels[0] = "
                                      f"{label!r}.")


def test_coordinates_beyond_float32_are_refused_at_write_time():
    with pytest.raises(InputValueError, match=r"expects coordinates within float32 range"):
        write_boxes(torch.tensor([[0, 0, 1e300, 1]], dtype=torch.float64), "json", image_size=(10, 10))


# --------------------------------------------------------------------------- bounded fuzz campaigns
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)
_coco_keys = st.sampled_from(["id", "image_id", "bbox", "category_id", "name", "file_name", "images",
                              "annotations", "categories", "boxes", "labels", "format", "space", "image_size",
                              "stride"])
_coco_like = st.recursive(
    _json_values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_coco_keys, inner, max_size=6),
    max_leaves=30,
)


def _only_box_file_errors(source, fmt="auto"):
    try:
        out = read_boxes(source, fmt, image_size=(100, 200))
    except BoxFileError:
        return
    assert out.boxes_image.dtype == torch.float32 and out.boxes_image.shape == (len(out.labels), 4)
    assert bool(torch.isfinite(out.boxes_image).all())
    assert all(isinstance(label, str) for label in out.labels)


_number = st.integers() | st.floats() | st.sampled_from([10**400, -(10**30), 3e38, 1e-320]) | _json_values
_annotation = st.dictionaries(
    st.sampled_from(["image_id", "bbox", "category_id", "id"]),
    st.lists(_number, min_size=3, max_size=5) | _number,
    max_size=4,
)
_coco_doc = st.fixed_dictionaries(
    {"annotations": st.lists(_annotation, max_size=4)},
    optional={"images": st.lists(st.dictionaries(st.sampled_from(["id", "file_name"]), _number), max_size=3) | _number,
              "categories": st.lists(st.dictionaries(st.sampled_from(["id", "name"]), _number), max_size=3) | _number},
)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_coco_doc | st.dictionaries(_coco_keys, _coco_like, max_size=6) | _coco_like,
       fmt=st.sampled_from(["auto", "coco", "json"]), as_text=st.booleans())
def test_fuzz_json_documents_give_boxes_or_a_box_file_error(doc, fmt, as_text):
    source = json.dumps(doc) if as_text else doc
    if not as_text and not isinstance(doc, (dict, list)):
        source = json.dumps(doc)
    _only_box_file_errors(source, fmt)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.-+eE \n\t#<>/abnx{}[]\",:")), max_size=200),
       fmt=st.sampled_from(["auto", "yolo", "voc", "json"]))
def test_fuzz_text_gives_boxes_or_a_box_file_error(text, fmt):
    _only_box_file_errors(text, fmt)
    _only_box_file_errors(text.encode(), fmt)


_coord = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(rows=st.lists(st.tuples(_coord, _coord, _coord, _coord), max_size=6),
       fmt=st.sampled_from(["json", "coco", "voc", "yolo"]),
       size=st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
       names=st.lists(st.text(max_size=6), min_size=6, max_size=6))
def test_fuzz_write_then_read_round_trips_or_refuses_at_write_time(rows, fmt, size, names):
    """Whatever write_boxes writes, read_boxes reads back to the same boxes (float32) and labels."""
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    labels = names[: len(boxes)]
    try:
        text = write_boxes(boxes, fmt, image_size=size, labels=labels)
    except InputValueError:
        return
    back = read_boxes(text, fmt, image_size=size)
    assert back.boxes_image.shape == boxes.shape
    if fmt in ("json", "voc"):  # exact by construction: repr of each float32 value, parsed back
        assert torch.equal(back.boxes_image, boxes)
    else:  # COCO adds x + (x2 - x1); YOLO normalizes by W, H and back: float64 math, then float32
        scale = max(1.0, float(boxes.abs().max()) if len(boxes) else 1.0)
        torch.testing.assert_close(back.boxes_image, boxes, rtol=0, atol=scale * 2 * float(np.finfo(np.float32).eps))
    if fmt in ("json", "coco"):
        assert back.labels == labels
    elif fmt == "voc":
        assert back.labels == labels
    else:  # YOLO keeps class ids: integer-like labels as themselves, the others numbered in order
        assert len(back.labels) == len(labels)
        kept = [(a, b) for a, b in zip(labels, back.labels, strict=True) if re.fullmatch("[0-9]{1,18}", a)]
        assert all(b == str(int(a)) for a, b in kept)
