"""The box table model: display in the user's format, edits, selections, bad values. No streamlit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roi_lab.ui import boxtable
from roi_lab.ui.boxtable import COORDS, append_selection, apply_edits, new_row, row_status, to_display, usable_boxes

SIZE = (100, 200)  # H, W


def coords(row):
    return [row[c] for c in COORDS]


def test_display_in_each_format_matches_hand_computed_values():
    rows = [new_row("a", [20, 10, 60, 50])]  # x1 y1 x2 y2 on a 200 x 100 image
    expected = {
        ("xyxy", "absolute"): [20, 10, 60, 50],
        ("xywh", "absolute"): [20, 10, 40, 40],
        ("cxcywh", "absolute"): [40, 30, 40, 40],
        ("yxyx", "absolute"): [10, 20, 50, 60],
        ("xyxy", "normalized"): [0.1, 0.1, 0.3, 0.5],
        ("cxcywh", "normalized"): [0.2, 0.3, 0.2, 0.4],
    }
    for (fmt, space), values in expected.items():
        frame = to_display(rows, fmt, space, SIZE)
        assert list(frame.columns) == ["label", *boxtable.columns_for(fmt), "status"]
        np.testing.assert_allclose(frame.iloc[0, 1:5].to_numpy(float), values, rtol=1e-6, err_msg=f"{fmt} {space}")


@pytest.mark.parametrize("fmt,space", [("xywh", "absolute"), ("cxcywh", "normalized"), ("yxyx", "normalized")])
def test_edits_in_the_users_format_are_stored_as_xyxy_pixels(fmt, space):
    rows = [new_row("a", [20, 10, 60, 50])]
    cols = boxtable.columns_for(fmt)
    shown = to_display(rows, fmt, space, SIZE).iloc[0]
    # move the box right by 10 px, expressed in the user's own format
    dx = 10 / SIZE[1] if space == "normalized" else 10
    first_x = [c for c in cols if c.startswith(("x", "cx"))][0]
    new, notes = apply_edits(rows, {"edited_rows": {0: {first_x: float(shown[first_x]) + dx}}}, fmt, space, SIZE)
    assert notes == []
    x_moves_both_edges = fmt in ("xywh", "cxcywh")  # x or cx moves with w kept; x1 moves the left edge only
    expected = [30, 10, 70 if x_moves_both_edges else 60, 50]
    np.testing.assert_allclose(coords(new[0]), expected, atol=1e-4)


def test_text_in_a_cell_is_refused_with_a_message_and_other_cells_still_apply():
    rows = [new_row("a", [20, 10, 60, 50]), new_row("b", [0, 0, 10, 10])]
    new, notes = apply_edits(rows, {"edited_rows": {"0": {"x1": "abc", "y2": 55}, 1: {"label": "renamed"}}},
                             "xyxy", "absolute", SIZE)
    assert notes == [("error", "Row 1, column x1: 'abc' is not a number; that cell keeps its old value.")]
    assert coords(new[0]) == [20, 10, 60, 55]
    assert new[1]["label"] == "renamed" and coords(new[1]) == [0, 0, 10, 10]


def test_infinite_values_are_refused():
    new, notes = apply_edits([new_row("a", [1, 1, 5, 5])], {"edited_rows": {0: {"x2": "inf"}}}, "xyxy", "absolute",
                             SIZE)
    assert notes == [("error", "Row 1, column x2: 'inf' is not a finite number; that cell keeps its old value.")]
    assert coords(new[0]) == [1, 1, 5, 5]


def test_nan_or_empty_cells_make_an_incomplete_row_that_is_left_out():
    new, notes = apply_edits([new_row("a", [1, 1, 5, 5])], {"edited_rows": {0: {"x2": float("nan")}}}, "xyxy",
                             "absolute", SIZE)
    assert notes == [] and row_status(new[0], SIZE) == "incomplete"
    boxes, labels, notes = usable_boxes(new, SIZE)
    assert boxes.shape == (0, 4) and labels == []
    assert notes == [("warning", "Row 1 (a) is incomplete: left out until fixed.")]


def test_an_added_row_in_another_format_is_a_draft_until_complete():
    rows = [new_row("a", [1, 1, 5, 5])]
    partial, _ = apply_edits(rows, {"added_rows": [{"cx": 0.5, "cy": 0.5}]}, "cxcywh", "normalized", SIZE)
    assert row_status(partial[1], SIZE) == "incomplete"
    shown = to_display(partial, "cxcywh", "normalized", SIZE).iloc[1]
    assert shown["cx"] == 0.5 and math.isnan(shown["w"])  # what the user typed stays visible
    done, _ = apply_edits(partial, {"edited_rows": {1: {"w": 0.25, "h": 0.5}}}, "cxcywh", "normalized", SIZE)
    np.testing.assert_allclose(coords(done[1]), [75, 25, 125, 75])
    assert done[1]["label"] == "box 2"


def test_deleted_rows_refer_to_the_table_the_editor_was_given():
    rows = [new_row(n, [i, i, i + 5, i + 5]) for i, n in enumerate("abc")]
    new, _ = apply_edits(rows, {"edited_rows": {2: {"label": "C"}}, "deleted_rows": [0, 1],
                                "added_rows": [{"x1": 1, "y1": 2, "x2": 3, "y2": 4}]}, "xyxy", "absolute", SIZE)
    assert [r["label"] for r in new] == ["C", "box 2"]
    assert coords(new[1]) == [1, 2, 3, 4]


def test_statuses_and_usable_boxes():
    rows = [
        new_row("ok", [10, 10, 20, 20]),
        new_row("flat", [10, 10, 30, 10]),
        new_row("inverted", [30, 10, 10, 20]),
        new_row("edge", [190, 90, 210, 110]),
        new_row("away", [300, 300, 400, 400]),
    ]
    assert [row_status(r, SIZE) for r in rows] == [
        "ok", "zero or negative size", "zero or negative size", "partly outside the image", "outside the image",
    ]
    boxes, labels, notes = usable_boxes(rows, SIZE)
    assert labels == ["ok", "edge", "away"]  # outside boxes are kept: seeing what they do is the point
    assert notes == [
        ("warning", "Row 2 (flat) is zero or negative size: left out until fixed."),
        ("warning", "Row 3 (inverted) is zero or negative size: left out until fixed."),
        ("info", "Row 4 (edge) is partly outside the image."),
        ("info", "Row 5 (away) is outside the image."),
    ]
    assert boxes.shape == (3, 4)


def test_selection_rectangles_are_sorted_clipped_and_appended():
    rows = [new_row("a", [1, 1, 5, 5])]
    new, notes = append_selection(rows, [{"x": [150, 250], "y": [80, -10]}, {"x": [5, 5.5], "y": [5, 9]}], SIZE)
    assert coords(new[1]) == [150, 0, 200, 80]
    assert new[1]["label"] == "box 2"
    assert len(new) == 2
    assert notes == [("warning", "Ignored a selection smaller than one pixel (or outside the image).")]
    _, notes = append_selection(rows, [{"points": []}], SIZE)
    assert notes[0][0] == "warning" and "without x/y corners" in notes[0][1]


def test_has_edits():
    assert not boxtable.has_edits(None)
    assert not boxtable.has_edits({"edited_rows": {}, "added_rows": [], "deleted_rows": []})
    assert boxtable.has_edits({"deleted_rows": [0]})


def test_rows_from_boxes_and_signature():
    rows = boxtable.rows_from_boxes(np.array([[1.23456, 2, 3, 4]]), ["x"])
    assert rows[0]["label"] == "x"
    assert boxtable.signature(np.array([[1.23456, 2, 3, 4]])) == ((1.235, 2.0, 3.0, 4.0),)
