"""Box formats, spaces and files: oracles are torchvision's box_convert / roi format helpers, hand
formulas from the file-format specs, and round trips (hypothesis)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from roi_lab.boxes import (
    BoxFormat,
    BoxSpace,
    LabeledBoxes,
    convert_boxes,
    read_boxes,
    to_rois,
    to_tf_boxes,
    write_boxes,
)
from roi_lab.errors import BoxFileError, InputValueError, RoiLabError, ShapeError

FORMATS = [f.value for f in BoxFormat]
SPACES = [s.value for s in BoxSpace]


@st.composite
def boxes_and_image(draw, max_k: int = 6):
    h = draw(st.integers(2, 1500))
    w = draw(st.integers(2, 1500))
    k = draw(st.integers(0, max_k))
    rows = []
    for _ in range(k):
        x1 = draw(st.floats(0, w - 1, allow_nan=False, width=32))
        y1 = draw(st.floats(0, h - 1, allow_nan=False, width=32))
        x2 = draw(st.floats(x1, w, allow_nan=False, width=32))
        y2 = draw(st.floats(y1, h, allow_nan=False, width=32))
        rows.append([x1, y1, x2, y2])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), (h, w)


# ------------------------------------------------------------------------------------------------
# convert_boxes
# ------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    data=boxes_and_image(),
    fmt=st.sampled_from(FORMATS),
    space=st.sampled_from(SPACES),
    stride=st.sampled_from([4, 8, 16, 32, (8, 16), 12.5]),
)
def test_round_trip_every_format_and_space(data, fmt, space, stride):
    boxes, size = data
    there = convert_boxes(boxes, dst_format=fmt, dst_space=space, image_size=size, stride=stride)
    back = convert_boxes(there, src_format=fmt, src_space=space, image_size=size, stride=stride)
    assert there.shape == boxes.shape and there.dtype == torch.float32
    torch.testing.assert_close(back, boxes, atol=1e-3, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    data=boxes_and_image(),
    pair=st.tuples(
        st.sampled_from(FORMATS), st.sampled_from(SPACES), st.sampled_from(FORMATS), st.sampled_from(SPACES)
    ),
)
def test_any_to_any_matches_going_through_image_xyxy(data, pair):
    """a -> b directly equals a -> image xyxy -> b (checked in float64 with independent formulas)."""
    boxes, (h, w) = data
    f1, s1, f2, s2 = pair
    stride = 16
    unit = {"image": (1, 1), "feature": (stride, stride), "normalized": (w, h), "normalized_minus_one": (w - 1, h - 1)}
    b = boxes.double()
    src = _manual_from_xyxy(b / torch.tensor(unit[s1] * 2, dtype=torch.float64), f1)
    expected = _manual_from_xyxy(b / torch.tensor(unit[s2] * 2, dtype=torch.float64), f2)
    got = convert_boxes(src, src_format=f1, dst_format=f2, src_space=s1, dst_space=s2, image_size=(h, w), stride=stride)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)


def _manual_from_xyxy(b: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == "yxyx":
        return b[:, [1, 0, 3, 2]]
    if fmt in ("xywh", "cxcywh"):
        return torchvision.ops.box_convert(b, "xyxy", fmt)
    return b


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_formats_match_torchvision_box_convert(fmt):
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 1.0, 3.0]])
    torch.testing.assert_close(convert_boxes(boxes, dst_format=fmt), torchvision.ops.box_convert(boxes, "xyxy", fmt))
    torch.testing.assert_close(convert_boxes(torchvision.ops.box_convert(boxes, "xyxy", fmt), src_format=fmt), boxes)


def test_spaces_by_hand():
    boxes = [[100, 50, 300, 250]]
    size = (501, 1001)  # H, W
    assert convert_boxes(boxes, dst_space="feature", stride=(10, 20)).tolist() == [[5, 5, 15, 25]]
    assert convert_boxes(boxes, dst_space=BoxSpace.NORMALIZED, image_size=size)[0].tolist() == pytest.approx(
        [100 / 1001, 50 / 501, 300 / 1001, 250 / 501]
    )
    assert convert_boxes(boxes, dst_space="normalized_minus_one", image_size=size)[0].tolist() == pytest.approx(
        [0.1, 0.1, 0.3, 0.5]
    )
    assert convert_boxes(boxes, dst_format=BoxFormat.YXYX).tolist() == [[50, 100, 250, 300]]
    # enums and strings are interchangeable, case-insensitive at the edge
    assert convert_boxes(boxes, dst_format="XYWH").tolist() == [[100, 50, 200, 200]]


def test_inputs_tensor_array_list_and_dtype_device():
    as_list = [[1, 2, 3, 4]]
    for value in (as_list, np.array(as_list, dtype=np.int64), torch.tensor(as_list), ((1, 2, 3, 4),)):
        out = convert_boxes(value)
        assert out.dtype == torch.float32 and out.tolist() == [[1, 2, 3, 4]]
    assert convert_boxes(torch.tensor(as_list, dtype=torch.float64)).dtype == torch.float64
    assert convert_boxes([]).shape == (0, 4)
    assert convert_boxes(torch.zeros(0, 4), dst_space="normalized", image_size=(5, 5)).shape == (0, 4)


@pytest.mark.cuda
def test_keeps_cuda_device():
    out = convert_boxes(torch.ones(2, 4, device="cuda"), dst_space="feature", stride=16)
    assert out.device.type == "cuda"


@pytest.mark.parametrize(
    ("value", "error", "pieces"),
    [
        ("10 20 30 40", ShapeError, ["Tensor[K, 4], an array or a nested list", "got str", "read_boxes"]),
        ([[1, 2, 3, 4], [1, 2, 3]], ShapeError, ["4 numbers each", "row 1 with 3 values"]),
        ([[1, 2, 3, "4"]], ShapeError, ["expects numbers", "row 0, column 3"]),
        ([1, 2, 3, 4], ShapeError, ["4 numbers each", "row 0 = 1"]),
        (torch.zeros(4), ShapeError, ["Tensor[K, 4]", "got Tensor[4]", "boxes[None]"]),
        (torch.zeros(3, 5), ShapeError, ["got Tensor[3, 5]", "boxes[:, 1:]"]),
        ([[0, 0, float("nan"), 1]], InputValueError, ["finite coordinates", "1 NaN/inf values, the first in row 0"]),
        (torch.tensor([[0, 0, 1, 1], [0, 0, float("inf"), 1]]), InputValueError, ["first in row 1"]),
        ([torch.zeros(1, 4), torch.zeros(2, 4)], ShapeError, ["one Tensor[K, 4]", "torch.cat(boxes)"]),
        (np.array([["a", "b", "c", "d"]]), ShapeError, ["numeric array"]),
        ({"x1": 0}, ShapeError, ["got dict"]),
    ],
)
def test_bad_boxes_have_clear_messages(value, error, pieces):
    with pytest.raises(error) as info:
        convert_boxes(value)
    message = str(info.value)
    assert message.startswith("convert_boxes(boxes=...) expects ")
    assert "\nFix: " in message
    for piece in pieces:
        assert piece in message


def test_missing_or_bad_parameters_have_clear_messages():
    with pytest.raises(InputValueError, match=r"image_size=\(H, W\) to convert source normalized boxes"):
        convert_boxes([[0, 0, 1, 1]], src_space="normalized")
    with pytest.raises(InputValueError, match=r"a stride to convert destination feature-pixel boxes.*\nFix: pass"):
        convert_boxes([[0, 0, 1, 1]], dst_space="feature")
    with pytest.raises(InputValueError, match=r"src_format=\.\.\.\) expects one of 'xyxy', 'yxyx', 'xywh', 'cxcywh'"):
        convert_boxes([[0, 0, 1, 1]], src_format="xy")
    with pytest.raises(InputValueError, match="dst_space"):
        convert_boxes([[0, 0, 1, 1]], dst_space="pixels")
    with pytest.raises(InputValueError, match="at least 2"):
        convert_boxes([[0, 0, 1, 1]], dst_space="normalized_minus_one", image_size=(1, 5))
    with pytest.raises(InputValueError, match="height first"):
        convert_boxes([[0, 0, 1, 1]], dst_space="normalized", image_size=(0, 5))
    # no parameter needed when the space does not change
    assert convert_boxes([[0, 0, 1, 1]], src_space="feature", dst_space="feature").tolist() == [[0, 0, 1, 1]]


# ------------------------------------------------------------------------------------------------
# to_rois / to_tf_boxes
# ------------------------------------------------------------------------------------------------


def test_to_rois_matches_torchvision():
    from torchvision.ops._utils import convert_boxes_to_roi_format

    per_image = [torch.rand(3, 4) * 100, torch.rand(0, 4), torch.rand(2, 4) * 100]
    torch.testing.assert_close(to_rois(per_image), convert_boxes_to_roi_format(per_image))
    one = torch.rand(4, 4)
    assert to_rois(one, 3)[:, 0].tolist() == [3, 3, 3, 3]
    assert to_rois(one, torch.tensor([0, 1, 1, 0]))[:, 0].tolist() == [0, 1, 1, 0]
    torch.testing.assert_close(to_rois(one)[:, 1:], one)
    # roi_align accepts what to_rois builds and gives the list form's result
    x = torch.rand(3, 2, 8, 8)
    torch.testing.assert_close(
        torchvision.ops.roi_align(x, to_rois(per_image), 2), torchvision.ops.roi_align(x, per_image, 2)
    )


def test_to_rois_errors():
    with pytest.raises(ShapeError, match=r"Tensor\[2\] \(one image index per box\)"):
        to_rois(torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(InputValueError, match="non-negative int"):
        to_rois(torch.zeros(2, 4), -1)
    with pytest.raises(InputValueError, match="the position is the index"):
        to_rois([torch.zeros(2, 4)], 1)
    with pytest.raises(ShapeError, match=r"to_rois\(boxes=\.\.\.\).*Tensor\[2, 5\]"):
        to_rois(torch.zeros(2, 5))


def test_to_tf_boxes_corner_aligned():
    boxes_norm, idx = to_tf_boxes(torch.tensor([[0.0, 0.0, 99.0, 49.0], [10.0, 5.0, 20.0, 15.0]]), (50, 100))
    torch.testing.assert_close(boxes_norm[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(boxes_norm[1], torch.tensor([5 / 49, 10 / 99, 15 / 49, 20 / 99]))
    assert idx.dtype == torch.int32 and idx.tolist() == [0, 0]
    assert to_tf_boxes(torch.zeros(2, 4), (5, 5), torch.tensor([1, 0]))[1].tolist() == [1, 0]
    with pytest.raises(ShapeError, match=r"one index per box, Tensor\[2\]"):
        to_tf_boxes(torch.zeros(2, 4), (5, 5), torch.tensor([1]))


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------

label_st = st.sampled_from(["cat", "dog", "traffic light", "a&b<c>", "0", "7"])


@settings(max_examples=25, deadline=None)
@given(data=boxes_and_image(), labels=st.data(), fmt=st.sampled_from(["coco", "voc", "json"]))
def test_file_round_trip_absolute_formats(data, labels, fmt):
    boxes, size = data
    names = labels.draw(st.lists(label_st, min_size=len(boxes), max_size=len(boxes)))
    text = write_boxes(boxes, fmt, image_size=size, labels=names)
    got = read_boxes(text)  # auto-detected
    assert isinstance(got, LabeledBoxes)
    assert got.labels == names
    torch.testing.assert_close(got.boxes_image, boxes, atol=1e-3, rtol=1e-6)
    if fmt in ("voc", "json"):
        assert torch.equal(got.boxes_image, boxes)  # exact: written with repr
    assert torch.equal(read_boxes(text, fmt).boxes_image, got.boxes_image)


@settings(max_examples=25, deadline=None)
@given(data=boxes_and_image(), labels=st.data())
def test_file_round_trip_yolo(data, labels):
    boxes, size = data
    names = labels.draw(st.lists(st.sampled_from(["0", "3", "12"]), min_size=len(boxes), max_size=len(boxes)))
    text = write_boxes(boxes, "yolo", image_size=size, labels=names)
    got = read_boxes(text, "yolo", image_size=size)
    assert got.labels == names
    torch.testing.assert_close(got.boxes_image, boxes, atol=1e-3, rtol=1e-5)


def test_yolo_written_by_hand():
    # class cx cy w h, normalized by W=200, H=100
    text = write_boxes([[20, 10, 60, 50]], "yolo", image_size=(100, 200), labels=["2"])
    cls, *vals = text.split()
    assert cls == "2"
    assert [float(v) for v in vals] == pytest.approx([40 / 200, 30 / 100, 40 / 200, 40 / 100])
    # names that are not class ids get ids in order of first appearance
    assert [
        line.split()[0]
        for line in write_boxes(torch.ones(3, 4), "yolo", image_size=(9, 9), labels=["cat", "dog", "cat"]).splitlines()
    ] == ["0", "1", "0"]


def test_coco_layout_and_full_dict():
    text = write_boxes([[10, 20, 40, 80]], "coco", image_size=(100, 200), labels=["cat"])
    coco = json.loads(text)
    assert coco["annotations"][0]["bbox"] == [10, 20, 30, 60]  # xywh absolute
    assert coco["images"][0]["width"] == 200 and coco["images"][0]["height"] == 100
    assert coco["categories"] == [{"id": 1, "name": "cat"}]
    several = {
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
        "annotations": [
            {"image_id": 9, "bbox": [1, 1, 2, 2], "category_id": 3},
            {"image_id": 7, "bbox": [0, 0, 10, 5], "category_id": 3},
            {"image_id": 7, "bbox": [5, 5, 1, 1], "category_id": 4},
        ],
        "categories": [{"id": 3, "name": "person"}],
    }
    first = read_boxes(several)
    assert first.boxes_image.tolist() == [[0, 0, 10, 5], [5, 5, 6, 6]] and first.labels == ["person", "4"]
    assert read_boxes(several, image_id="b.jpg").boxes_image.tolist() == [[1, 1, 3, 3]]
    assert read_boxes(several, image_id=9).labels == ["person"]
    bare = read_boxes([{"bbox": [1, 2, 3, 4], "category_id": 1}])
    assert bare.boxes_image.tolist() == [[1, 2, 4, 6]] and bare.labels == ["1"]
    with pytest.raises(BoxFileError, match="an image id or file_name that has annotations"):
        read_boxes(several, image_id="missing.jpg")


def test_voc_by_hand_and_sources(tmp_path: Path):
    xml = """<annotation><size><width>500</width><height>375</height></size>
      <object><name>dog</name><bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax><ymax>371</ymax></bndbox></object>
      <object><name> person </name><bndbox><xmin>8</xmin><ymin>12</ymin><xmax>352</xmax><ymax>498</ymax></bndbox>
      </object></annotation>"""
    expected = LabeledBoxes(torch.tensor([[48.0, 240, 195, 371], [8, 12, 352, 498]]), ["dog", "person"])
    path = tmp_path / "000001.xml"
    path.write_text(xml)
    for source in (xml, xml.encode(), path, str(path)):
        got = read_boxes(source)
        assert torch.equal(got.boxes_image, expected.boxes_image) and got.labels == expected.labels
    yolo = tmp_path / "img.txt"
    yolo.write_text("# comment\n\n1 0.5 0.5 1 1 0.93\n")
    assert read_boxes(yolo, image_size=(10, 20)).boxes_image.tolist() == [[0, 0, 20, 10]]


def test_plain_json_any_format_and_space():
    obj = {"format": "cxcywh", "space": "normalized", "boxes": [[0.5, 0.5, 0.5, 1.0]], "labels": ["a"]}
    assert read_boxes(obj, image_size=(100, 200)).boxes_image.tolist() == [[50, 0, 150, 100]]
    obj2 = {"format": "yxyx", "space": "feature", "stride": 16, "boxes": [[1, 2, 3, 4]]}
    got = read_boxes(json.dumps(obj2))
    assert got.boxes_image.tolist() == [[32, 16, 64, 48]] and got.labels == ["object"]
    assert read_boxes({"boxes": [], "labels": []}).boxes_image.shape == (0, 4)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<annotation><object><name>&lol2;</name></object></annotation>"""


@pytest.mark.parametrize(
    ("source", "kwargs", "pieces"),
    [
        (BILLION_LAUGHS, {}, ["without a DOCTYPE or ENTITY", "remove the DOCTYPE/ENTITY lines"]),
        ("<annotation><object>", {}, ["voc line 1, column", "well-formed XML"]),
        ("<annotation><object><name>a</name></object></annotation>", {}, ["voc object 0", "<bndbox>"]),
        (
            "<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax><ymax>2</ymax></bndbox></object>"
            "</annotation>",
            {},
            ["voc object 0 <xmax>", "a number", "'x'"],
        ),
        (
            "<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object></annotation>",
            {},
            ["<ymax>", "missing"],
        ),
        (
            "<annotation><object><bndbox><xmin>5</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
            "</annotation>",
            {},
            ["xmax >= xmin", "swap"],
        ),
        ("0 0.5 0.5 0.1 0.1", {}, ["image_size=(H, W): YOLO boxes are normalized"]),
        ("0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1\n", {"image_size": (10, 10)}, ["yolo line 2", "5 fields", "4 fields"]),
        ("cat 0.5 0.5 0.1 0.1", {"image_size": (10, 10)}, ["yolo line 1, field 'class'", "integer class id"]),
        (
            "0 320 0.5 0.1 0.1",
            {"image_size": (10, 10)},
            ["field 'cx'", "normalized value in [0, 1]", "pixels?", "divide by the image width"],
        ),
        ("0 0.5 nan 0.1 0.1", {"image_size": (10, 10)}, ["field 'cy'", "a finite number", "nan"]),
        ("0 0.5 0.5 abc 0.1", {"image_size": (10, 10)}, ["field 'w'", "a number"]),
        ('{"boxes": [[1, 2, 3]]}', {}, ["json boxes[0]", "a list of 4 numbers"]),
        ('{"boxes": [[1, 2, 3, NaN]]}', {}, ["json boxes[0][3]", "a finite number"]),
        ('{"boxes": [[1, 2, 3, "4"]]}', {}, ["json boxes[0][3]", "a number", "got str"]),
        ('{"boxes": [[1, 2, 3, 4]], "labels": []}', {}, ["a list of 1 labels, one per box"]),
        ('{"boxes": [[1, 2, 3, 4]], "format": "ltrb"}', {}, ["json field 'format'", "'xyxy'"]),
        ('{"boxes": [[0, 0, 1, 1]], "space": "normalized"}', {}, ["image_size=(H, W)", "or add it to the file"]),
        ('{"boxes": [[1, 2, 3, 4]],}', {}, ["JSON line 1, column", "valid JSON", "trailing comma"]),
        ('{"annotations": [{"bbox": [1, 2, 3]}]}', {}, ["coco annotations[0].bbox", "[x, y, width, height]"]),
        ('{"annotations": [{"bbox": [10, 10, 5, -2]}]}', {}, ["non-negative width and height", "x2 - x1"]),
        ('{"annotations": [{"bbox": [1, 2, 3, Infinity]}]}', {}, ["bbox[3]", "a finite number"]),
        ('{"annotations": [3]}', {}, ["coco annotations[0]", "a dict with a 'bbox'"]),
        ('{"annotations": {}}', {"fmt": "coco"}, ["an 'annotations' list"]),
        (b"\xff\xfe\x00garbage", {}, ["UTF-8", "not UTF-8"]),
        (42, {}, ["a path, the file's text or bytes"]),
    ],
)
def test_malformed_files_have_clear_messages(source, kwargs, pieces):
    with pytest.raises(BoxFileError) as info:
        read_boxes(source, **kwargs)
    message = str(info.value)
    assert message.startswith("read_boxes")
    assert "\nFix: " in message
    for piece in pieces:
        assert piece in message, message
    assert isinstance(info.value, ValueError) and isinstance(info.value, RoiLabError)


def test_missing_file_and_bad_fmt():
    with pytest.raises(BoxFileError, match="readable box file"):
        read_boxes(Path("/nonexistent/boxes.xml"))
    with pytest.raises(BoxFileError, match="'missing/boxes.json', which is not a file"):
        read_boxes("missing/boxes.json")
    with pytest.raises(InputValueError, match="'auto', 'coco', 'voc', 'yolo' or 'json'"):
        read_boxes("{}", fmt="csv")
    with pytest.raises(InputValueError, match="'coco', 'voc', 'yolo' or 'json'"):
        write_boxes([[0, 0, 1, 1]], "csv", image_size=(5, 5))
    with pytest.raises(InputValueError, match="1 labels, one per box"):
        write_boxes([[0, 0, 1, 1]], "voc", image_size=(5, 5), labels=["a", "b"])
    with pytest.raises(InputValueError, match="finite"):
        write_boxes([[0, 0, math.nan, 1]], "voc", image_size=(5, 5))
