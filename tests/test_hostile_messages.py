"""Error messages of bounded size: every field of a RoiLabError is clipped (a 10 MB YOLO line used to make a
10 MB message that the app rendered), and describe() costs little on huge, deep or odd values.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roi_lab.boxes import read_boxes
from roi_lab.errors import MAX_FIELD_CHARS, BoxFileError, ImageDecodeError, RoiLabError, ShapeError, clip, describe
from roi_lab.image import decode_image

# "<where> expects <expected>; got <got>.\nFix: <fix>": four clipped fields and 22 characters around them
MAX_MESSAGE = 4 * MAX_FIELD_CHARS + 22


def test_seven_megabyte_yolo_line_gives_a_short_message():
    line = "0 " + "1" * 7_000_000  # under the 8 MiB size cap: the line itself must be clipped
    with pytest.raises(BoxFileError) as info:
        read_boxes(line, image_size=(10, 10))
    msg = str(info.value)
    assert len(msg) < 600
    assert msg.startswith("read_boxes (yolo line 1) expects 5 fields 'class cx cy w h'; got 2 fields: '0 1111")
    assert "characters left out] ...1111" in msg


def test_every_field_is_clipped_in_the_message_and_the_attributes():
    huge = "x" * 5_000_000
    err = ShapeError(huge, expected=huge, got=huge, fix=huge)
    assert len(str(err)) <= MAX_MESSAGE
    for value in err.to_dict().values():
        assert len(value) <= MAX_MESSAGE
    assert err.got.startswith("xxx") and "[4999" in err.got and err.got.endswith("xxx")


def test_clip_keeps_short_text_and_says_what_it_left_out():
    assert clip("short") == "short"
    text = "a" * 600 + "b" * 600
    out = clip(text)
    assert len(out) <= MAX_FIELD_CHARS and out.startswith("a" * 100) and out.endswith("b" * 100)
    left = int(out.split("[")[1].split(" ")[0])
    assert left == len(text) - (len(out) - len(f"... [{left} characters left out] ..."))


def test_describe_is_bounded_in_size_and_cost():
    nested: list = []
    for _ in range(100_000):
        nested = [nested]

    class Hostile:
        def __repr__(self):
            raise RuntimeError("no repr for you")

    values = [list(range(2_000_000)), nested, 10**5000, "s" * 10_000_000, {i: i for i in range(100_000)},
              Hostile(), (1.5,) * 1_000_000]
    shown = [describe(v) for v in values]  # bounded work: reprlib stops at 30 items, 6 levels, 200 characters
    assert all(len(s) < 120 for s in shown), shown
    assert shown[2] == "int <int of 16610 bits>"
    assert shown[5].startswith("Hostile <Hostile")


def test_non_image_text_upload_has_a_short_message():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"hello " * 2_000_000)
    assert len(str(info.value)) < 300


@settings(max_examples=200, deadline=None, derandomize=True)
@given(fields=st.lists(st.text(max_size=50) | st.integers(0, 3_000_000).map(lambda n: "y" * n), min_size=4,
                       max_size=4))
def test_fuzz_messages_never_exceed_the_bound(fields):
    where, expected, got, fix = fields
    err = RoiLabError(where, expected=expected, got=got, fix=fix)
    assert len(str(err)) <= MAX_MESSAGE
    for name, value in zip(("where", "expected", "got", "fix"), fields, strict=True):
        kept = getattr(err, name)
        assert kept == value if len(value) <= MAX_FIELD_CHARS else len(kept) <= MAX_FIELD_CHARS
