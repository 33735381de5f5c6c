"""crop_and_resize against TensorFlow: a recorded fixture (tests/fixtures/tf_crop_and_resize.npz, see
tests/fixtures/README.md), the published values of TF's own kernel test, and a line-by-line transcription
of TF's CPU kernel (tensorflow/core/kernels/image/crop_and_resize_op.cc) for property tests."""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import roi_lab.ops._crop_and_resize_kernel as car_module
from roi_lab.errors import DeviceMismatchError, DTypeError, InputValueError, RoiLabError, ShapeError
from roi_lab.ops.crop_and_resize import crop_and_resize

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tf_crop_and_resize.npz"
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# TF computes in float32 and returns float32. The fixture images are exact in every dtype, so the only
# error is rounding the result to the dtype (or float64 arithmetic for float64 images).
TOL = {
    torch.float32: dict(rtol=1e-6, atol=1e-6),
    torch.float64: dict(rtol=1e-6, atol=1e-5),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=8e-3, atol=8e-3),
}
GRAD_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-5, atol=1e-5)}


@lru_cache(maxsize=1)
def _fixture() -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(FIXTURE) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("__meta__"))), arrays


def _cases(grad: bool = False) -> list[str]:
    meta, _ = _fixture()
    return [c["name"] for c in meta["cases"] if c["grad"] or not grad]


def _case(name: str) -> dict:
    meta, arrays = _fixture()
    case = next(c for c in meta["cases"] if c["name"] == name)
    fields = {key.split("__", 1)[1]: value for key, value in arrays.items() if key.startswith(name + "__")}
    return {**case, **fields}


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def _run(case: dict, image: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
    return crop_and_resize(
        image,
        torch.from_numpy(case["boxes"]).to(image.device) if boxes is None else boxes,
        torch.from_numpy(case["box_indices"]).to(image.device),
        tuple(case["crop_size"].tolist()),
        method=case["method"],
        extrapolation_value=case["extrapolation_value"],
    )


def test_fixture_is_small_and_records_the_tf_version():
    meta, arrays = _fixture()
    assert FIXTURE.stat().st_size < 1_000_000
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", meta["tensorflow"])
    assert len(meta["cases"]) >= 30 and all(f"{c['name']}__output" in arrays for c in meta["cases"])


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", _cases())
def test_matches_tensorflow_fixture(name, dtype):
    case = _case(name)
    out = _run(case, _nchw(case["image"]).to(dtype))
    expected = _nchw(case["output"])
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out.double(), expected.double(), **TOL[dtype])


def test_float32_is_bit_exact_with_tensorflow_on_cpu():
    """Same float32 operations in the same order as TF's kernel: equal bits, not just close."""
    for name in _cases():
        case = _case(name)
        assert torch.equal(_run(case, _nchw(case["image"])), _nchw(case["output"])), name


@pytest.mark.parametrize("layout", ["channels_last", "strided_view", "transposed"])
def test_memory_layouts_give_the_same_values(layout):
    for name in _cases():
        case = _case(name)
        image = _nchw(case["image"]).contiguous()
        if layout == "channels_last":
            image = image.contiguous(memory_format=torch.channels_last)
        elif layout == "strided_view":  # every other element of a larger tensor
            big = torch.zeros(*image.shape[:3], image.shape[3] * 2)
            big[..., ::2] = image
            image = big[..., ::2]
        else:  # H and W swapped in memory
            image = image.transpose(2, 3).contiguous().transpose(2, 3)
        out = _run(case, image)
        assert torch.equal(out, _nchw(case["output"])), name
        if layout == "channels_last" and out.numel() and not image.is_contiguous():  # unambiguous layout
            assert out.is_contiguous(memory_format=torch.channels_last), name


def test_contiguous_input_gives_contiguous_output():
    case = _case("larger")
    assert _run(case, _nchw(case["image"]).contiguous()).is_contiguous()


def test_chunked_kernel_matches_one_chunk(monkeypatch):
    case = _case("larger")
    image = _nchw(case["image"]).contiguous().requires_grad_()
    dy = _nchw(case["dy"])
    whole = _run(case, image)
    (grad_whole,) = torch.autograd.grad(whole, image, dy)
    monkeypatch.setattr(car_module, "_CHUNK_ELEMENTS", 1)  # one box per chunk
    chunked = _run(case, image)
    (grad_chunked,) = torch.autograd.grad(chunked, image, dy)
    assert torch.equal(chunked, whole)
    torch.testing.assert_close(grad_chunked, grad_whole)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("chunk", [1 << 17, 64])  # the default, and one crop row (or less) per chunk
def test_fused_forward_gives_the_bits_of_the_differentiable_kernel(dtype, layout, chunk, monkeypatch):
    """The forward (one gather of the four corners, the top and bottom rows lerped together, the last add
    written into the crops) against the kernel the backward replays (four gathers, one lerp at a time):
    the same float operations in the same order, so equal bits for every dtype, layout and chunking, also
    with samples outside the image (extrapolated) and crops of one row or column."""
    gen = torch.Generator().manual_seed(chunk)
    image = torch.randn(2, 5, 9, 13, generator=gen).to(dtype)
    if layout == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
    boxes = torch.rand(23, 4, generator=gen) * 1.4 - 0.2  # some corners outside [0, 1], some boxes flipped
    index = torch.randint(0, 2, (23,), generator=gen)
    monkeypatch.setattr(car_module, "_FORWARD_CHUNK_ELEMENTS", chunk)
    for crop in [(7, 5), (1, 4), (3, 1), (40, 2)]:
        fused = car_module.crop_and_resize_forward(image, boxes, index, *crop, "bilinear", -2.5)
        with torch.no_grad():
            reference = car_module._kernel(image, boxes, index, *crop, "bilinear", -2.5)
        assert (fused == -2.5).any() and (fused != -2.5).any()  # extrapolated and sampled outputs both
        assert torch.equal(fused, reference), crop  # exact by construction (see _bilinear_forward)
        assert fused.is_contiguous(memory_format=car_module.output_format(image))


# ----------------------------------------------------------------------------- TF's published values
# tensorflow/core/kernels/image/crop_and_resize_op_test.cc: image [[1, 2], [3, 4]] or arange(1, 10) 3x3.
I2 = [[1, 2], [3, 4]]
I3 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
V = -1.0
PUBLISHED = [
    # name, image, boxes, crop, method, extrapolation, expected [K, crop_h, crop_w]
    ("2x2To1x1", I2, [[0, 0, 1, 1]], (1, 1), "bilinear", 0, [[[2.5]]]),
    ("2x2To1x1NearestNeighbor", I2, [[0, 0, 1, 1]], (1, 1), "nearest", 0, [[[4.0]]]),
    ("2x2To1x1Flipped", I2, [[1, 1, 0, 0]], (1, 1), "bilinear", 0, [[[2.5]]]),
    ("2x2To1x1FlippedNearestNeighbor", I2, [[1, 1, 0, 0]], (1, 1), "nearest", 0, [[[4.0]]]),
    ("2x2To3x3", I2, [[0, 0, 1, 1]], (3, 3), "bilinear", 0, [[[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]]]),
    ("2x2To3x3NearestNeighbor", I2, [[0, 0, 1, 1]], (3, 3), "nearest", 0, [[[1, 2, 2], [3, 4, 4], [3, 4, 4]]]),
    ("2x2To3x3Flipped", I2, [[1, 1, 0, 0]], (3, 3), "bilinear", 0, [[[4, 3.5, 3], [3, 2.5, 2], [2, 1.5, 1]]]),
    ("2x2To3x3FlippedNearestNeighbor", I2, [[1, 1, 0, 0]], (3, 3), "nearest", 0, [[[4, 4, 3], [4, 4, 3], [2, 2, 1]]]),
    ("3x3To2x2", I3, [[0, 0, 1, 1], [0, 0, 0.5, 0.5]], (2, 2), "bilinear", 0, [[[1, 3], [7, 9]], [[1, 2], [4, 5]]]),
    ("3x3To2x2NearestNeighbor", I3, [[0, 0, 1, 1], [0, 0, 0.5, 0.5]], (2, 2), "nearest", 0,
     [[[1, 3], [7, 9]], [[1, 2], [4, 5]]]),
    ("3x3To2x2Flipped", I3, [[1, 1, 0, 0], [0.5, 0.5, 0, 0]], (2, 2), "bilinear", 0,
     [[[9, 7], [3, 1]], [[5, 4], [2, 1]]]),
    ("3x3To2x2FlippedNearestNeighbor", I3, [[1, 1, 0, 0], [0.5, 0.5, 0, 0]], (2, 2), "nearest", 0,
     [[[9, 7], [3, 1]], [[5, 4], [2, 1]]]),
    ("2x2To3x3Extrapolated", I2, [[-1, -1, 1, 1]], (3, 3), "bilinear", V, [[[V, V, V], [V, 1, 2], [V, 3, 4]]]),
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("image", "boxes", "crop", "method", "extrapolation", "expected"),
    [p[1:] for p in PUBLISHED],
    ids=[p[0] for p in PUBLISHED],
)
def test_tf_published_values(image, boxes, crop, method, extrapolation, expected, dtype):
    image_t = torch.tensor(image, dtype=dtype)[None, None]  # [1, 1, H, W]
    boxes_t = torch.tensor(boxes, dtype=torch.float32)
    out = crop_and_resize(
        image_t, boxes_t, torch.zeros(len(boxes), dtype=torch.int32), crop, method=method,
        extrapolation_value=extrapolation,
    )  # fmt: skip
    assert torch.equal(out, torch.tensor(expected, dtype=dtype)[:, None])


def test_tf_published_no_crop_gives_empty_result():
    """TestCropAndResize2x2To3x3NoCrop: zero boxes -> Tensor[0, C, 3, 3]; backward still works."""
    image = torch.tensor(I2, dtype=torch.float32)[None, None].requires_grad_()
    out = crop_and_resize(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int32), (3, 3))
    assert out.shape == (0, 1, 3, 3) and out.dtype == torch.float32
    out.sum().backward()
    assert torch.equal(image.grad, torch.zeros_like(image))


def test_tf_published_with_sharding():
    """TestWithSharding: 999 x 999 ramp, boxes [0, 0, .5, .5] and [.5, .5, 1, 1] -> 500 x 500 crops."""
    length, half = 999, 500
    image = torch.arange(length, dtype=torch.float32).expand(length, length)[None, None]
    boxes = torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    out = crop_and_resize(image, boxes, torch.tensor([0, 0]), (half, half))
    ramp = torch.arange(half, dtype=torch.float32).expand(half, half)
    assert torch.equal(out[0, 0], ramp) and torch.equal(out[1, 0], ramp + 499)


def test_nearest_rounds_halves_away_from_zero():
    image = (10 * torch.arange(5.0)[:, None] + torch.arange(5.0))[None, None]  # value = 10 * row + col
    # y1 * (H - 1) = 0.5 and a step of 1.0: samples at 0.5, 1.5, 2.5, 3.5 exactly
    out = crop_and_resize(image, torch.tensor([[0.125, 0.125, 0.875, 0.875]]), torch.tensor([0]), 4, method="nearest")
    index = torch.tensor([1.0, 2.0, 3.0, 4.0])  # roundf: 0.5 -> 1, 2.5 -> 3
    assert torch.equal(out[0, 0], 10 * index[:, None] + index)
    banker = torch.round(torch.tensor([0.5, 1.5, 2.5, 3.5]))  # what torch.round would pick: 0, 2, 2, 4
    assert not torch.equal(out[0, 0], 10 * banker[:, None] + banker)


def test_nearest_just_below_a_half_rounds_down():
    """roundf(0.49999997) is 0, but float32 floor(0.49999997 + 0.5) is 1 (the sum rounds up to 1.0)."""
    below_half = float(np.nextafter(np.float32(0.5), np.float32(0)))
    image = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    box = torch.tensor([[below_half, below_half, below_half, below_half]])
    out = crop_and_resize(image, box, torch.tensor([0]), 1, method="nearest")
    assert out.item() == 0.0


# ------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", _cases(grad=True))
def test_image_gradient_matches_tensorflow(name, dtype):
    case = _case(name)
    image = _nchw(case["image"]).to(dtype).requires_grad_()
    out = _run(case, image)
    (grad,) = torch.autograd.grad(out, image, _nchw(case["dy"]).to(dtype))
    torch.testing.assert_close(grad.double(), _nchw(case["grad_image"]).double(), **GRAD_TOL[dtype])


@pytest.mark.parametrize("name", [n for n in _cases(grad=True) if _case(n)["method"] == "bilinear"])
def test_box_gradient_matches_tensorflow_for_bilinear(name):
    case = _case(name)
    boxes = torch.from_numpy(case["boxes"]).clone().requires_grad_()
    out = _run(case, _nchw(case["image"]), boxes)
    (grad,) = torch.autograd.grad(out, boxes, _nchw(case["dy"]))
    expected = torch.from_numpy(case["grad_boxes"])
    # float32 sums of up to a few hundred terms of size ~100, in a different order than TF's
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-5 * max(1.0, expected.abs().max().item()))


def test_nearest_gives_boxes_no_gradient_unlike_tf():
    """TF's CropAndResizeGradBoxes ignores `method` and returns the bilinear box gradient even for nearest
    (recorded in the fixture); a nearest crop is piecewise constant in the boxes, so here it has none."""
    case = _case("random_nearest")
    assert np.abs(case["grad_boxes"]).max() > 0  # TF's (bilinear) gradient
    boxes = torch.from_numpy(case["boxes"]).clone().requires_grad_()
    out = _run(case, _nchw(case["image"]).requires_grad_(), boxes)
    (grad,) = torch.autograd.grad(out, boxes, _nchw(case["dy"]), allow_unused=True)
    assert grad is None


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_gradcheck_float64(method):
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=gen).requires_grad_()
    boxes = torch.tensor([[0.1, 0.2, 0.9, 0.7], [-0.3, 1.2, 0.6, 0.1], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]])
    box_indices = torch.tensor([0, 1, 1, 0])
    assert torch.autograd.gradcheck(
        lambda x: crop_and_resize(x, boxes, box_indices, (3, 4), method=method, extrapolation_value=0.7), (image,)
    )
    assert torch.autograd.gradgradcheck(
        lambda x: crop_and_resize(x, boxes, box_indices, (3, 4), method=method), (image,)
    )


# ------------------------------------------------------- properties against TF's kernel, transcribed


def _tf_cpu_kernel(image_nhwc, boxes, box_indices, crop_size, method, extrapolation_value):
    """tensorflow/core/kernels/image/crop_and_resize_op.cc, CropAndResize<CPUDevice, T>, line by line,
    in numpy float32 scalars (C float arithmetic). The crop_h == 1 centre is computed in double as in C++."""
    f32 = np.float32
    _, height, width, depth = image_nhwc.shape
    crop_height, crop_width = crop_size
    crops = np.empty((len(boxes), crop_height, crop_width, depth), np.float32)
    for b, (y1, x1, y2, x2) in enumerate(boxes.astype(np.float32)):
        b_in = box_indices[b]
        height_scale = (y2 - y1) * f32(height - 1) / f32(crop_height - 1) if crop_height > 1 else f32(0)
        width_scale = (x2 - x1) * f32(width - 1) / f32(crop_width - 1) if crop_width > 1 else f32(0)
        for y in range(crop_height):
            in_y = y1 * f32(height - 1) + f32(y) * height_scale if crop_height > 1 else \
                f32(0.5 * float(y1 + y2) * (height - 1))  # fmt: skip
            if in_y < 0 or in_y > height - 1:
                crops[b, y] = extrapolation_value
                continue
            for x in range(crop_width):
                in_x = x1 * f32(width - 1) + f32(x) * width_scale if crop_width > 1 else \
                    f32(0.5 * float(x1 + x2) * (width - 1))  # fmt: skip
                if in_x < 0 or in_x > width - 1:
                    crops[b, y, x] = extrapolation_value
                    continue
                if method == "bilinear":
                    top, bottom, left, right = math.floor(in_y), math.ceil(in_y), math.floor(in_x), math.ceil(in_x)
                    y_lerp, x_lerp = in_y - f32(top), in_x - f32(left)
                    top_left, top_right = image_nhwc[b_in, top, left], image_nhwc[b_in, top, right]
                    bottom_left, bottom_right = image_nhwc[b_in, bottom, left], image_nhwc[b_in, bottom, right]
                    upper = top_left + (top_right - top_left) * x_lerp
                    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
                    crops[b, y, x] = upper + (lower - upper) * y_lerp
                else:  # roundf of a non-negative float: floor(v + 0.5) in double is exact
                    crops[b, y, x] = image_nhwc[b_in, math.floor(float(in_y) + 0.5), math.floor(float(in_x) + 0.5)]
    return crops


coord = st.floats(-0.5, 1.5, width=32)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    boxes=st.lists(st.tuples(coord, coord, coord, coord), min_size=0, max_size=4),
    crop=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    method=st.sampled_from(["bilinear", "nearest"]),
    extrapolation=st.sampled_from([0.0, -1.0, 3.5]),
    seed=st.integers(0, 2**16),
)
def test_matches_transcribed_tf_kernel(n, c, h, w, boxes, crop, method, extrapolation, seed):
    rng = np.random.default_rng(seed)
    image_nhwc = rng.normal(size=(n, h, w, c)).astype(np.float32)
    boxes_np = np.array(boxes, np.float32).reshape(-1, 4)
    box_indices = rng.integers(0, n, size=len(boxes_np))
    expected = _tf_cpu_kernel(image_nhwc, boxes_np, box_indices, crop, method, extrapolation)
    out = crop_and_resize(
        torch.from_numpy(image_nhwc).permute(0, 3, 1, 2), torch.from_numpy(boxes_np), torch.from_numpy(box_indices),
        crop, method=method, extrapolation_value=extrapolation,
    )  # fmt: skip
    assert torch.equal(out, torch.from_numpy(expected).permute(0, 3, 1, 2))


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 3),
    method=st.sampled_from(["bilinear", "nearest"]),
    dtype=st.sampled_from(DTYPES),
)
def test_full_box_at_image_size_returns_the_image(h, w, c, method, dtype):
    image = torch.randn(2, c, h, w).to(dtype)
    out = crop_and_resize(image, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.tensor([1, 0]), (h, w), method=method)
    assert torch.equal(out, image.flip(0))


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(2, 8),
    w=st.integers(2, 8),
    crop=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    box=st.tuples(*[st.floats(0.03125, 0.96875, width=32)] * 4),
)
def test_flipping_the_box_flips_the_crop(h, w, crop, box):
    image = torch.randn(1, 2, h, w)
    y1, x1, y2, x2 = box
    boxes = torch.tensor([[y1, x1, y2, x2], [y2, x1, y1, x2], [y1, x2, y2, x1]])
    out = crop_and_resize(image, boxes, torch.zeros(3, dtype=torch.int64), crop)
    torch.testing.assert_close(out[1], out[0].flip(-2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[2], out[0].flip(-1), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------- edge inputs


def test_accepts_lists_and_every_integer_index_dtype():
    image = torch.tensor(I2, dtype=torch.float32)[None, None]
    expected = torch.tensor([[[[2.5]]]])
    assert torch.equal(crop_and_resize(image, [[0, 0, 1, 1]], [0], [1, 1]), expected)
    assert torch.equal(crop_and_resize(image, np.array([[0, 0, 1, 1]], np.float32), np.array([0]), 1), expected)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        assert torch.equal(crop_and_resize(image, torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0], dtype=dtype), 1),
                           expected)  # fmt: skip


def test_float64_boxes_are_used_as_float32_like_tf():
    """TF's kernel takes float32 boxes; a float64 box is rounded to float32 first, so it lands where TF's does."""
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    boxes64 = torch.tensor([[0.1, 0.2, 0.7, 0.9]], dtype=torch.float64)
    out64 = crop_and_resize(image, boxes64, torch.tensor([0]), 3)
    assert torch.equal(out64, crop_and_resize(image, boxes64.float(), torch.tensor([0]), 3))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_matches_tensorflow_fixture_and_gradients(dtype):
    for name in _cases():
        case = _case(name)
        image = _nchw(case["image"]).to("cuda", dtype).requires_grad_(dtype in GRAD_TOL)
        out = _run(case, image)
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.double().cpu(), _nchw(case["output"]).double(), **TOL[dtype])
        if "dy" in case and dtype in GRAD_TOL:
            (grad,) = torch.autograd.grad(out, image, _nchw(case["dy"]).to("cuda", dtype))
            torch.testing.assert_close(grad.double().cpu(), _nchw(case["grad_image"]).double(), **GRAD_TOL[dtype])


# ---------------------------------------------------------------------------------------- bad inputs

IMAGE = torch.zeros(2, 3, 4, 4)
BOXES = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.8, 0.8]])
INDEX = torch.tensor([0, 1])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(image=torch.zeros(3, 4, 4)), ShapeError,
         "crop_and_resize(image=...) expects a feature map Tensor[N, C, H, W]; got Tensor[3, 4, 4] float32 on cpu.\n"
         "Fix: add the batch dimension with x[None]"),
        (dict(image=torch.zeros(2, 3, 4, 4, dtype=torch.uint8)), DTypeError,
         "crop_and_resize(image=...) expects a floating feature map (float16, bfloat16, float32 or float64); "
         "got Tensor[2, 3, 4, 4] uint8 on cpu.\nFix: convert it first, e.g. image.float()"),
        (dict(image=torch.zeros(2, 3, 0, 4)), ShapeError,
         "crop_and_resize(image=...) expects an image with at least one row and one column; got Tensor[2, 3, 0, 4]"),
        (dict(boxes=torch.tensor([[0, 0.0, 0, 1, 1], [1, 0, 0, 1, 1]])), ShapeError,
         "crop_and_resize(boxes=...) expects boxes as Tensor[K, 4] normalized (y1, x1, y2, x2), the image of each "
         "box given in box_indices; got Tensor[2, 5] float32 on cpu, which looks like torchvision rois "
         "(batch_index, x1, y1, x2, y2).\nFix: split off the batch column into box_indices and convert the pixel "
         "xyxy corners, e.g. boxes_norm, box_indices = roi_lab.to_tf_boxes(rois[:, 1:], image_size=(H, W), "
         "box_indices=rois[:, 0].long())"),
        (dict(boxes=torch.tensor([0.0, 0.0, 1.0, 1.0]), box_indices=torch.tensor([0])), ShapeError,
         "got Tensor[4] float32 on cpu.\nFix: add the box dimension for a single box: boxes[None]"),
        (dict(boxes=torch.zeros(2, 3)), ShapeError, "got Tensor[2, 3] float32 on cpu.\nFix: pass one row (y1, x1, "
         "y2, x2) per box, shaped [K, 4]"),
        (dict(boxes="0 0 1 1"), ShapeError, "got str '0 0 1 1'"),
        (dict(boxes=torch.tensor([[0, 0, 3, 3], [1, 1, 2, 2]])), DTypeError,
         "crop_and_resize(boxes=...) expects floating boxes in normalized coordinates (y1, x1, y2, x2), 0..1 inside "
         "the image; got Tensor[2, 4] int64 on cpu.\nFix: integer boxes are usually pixel coordinates: normalize "
         "them, e.g. boxes_norm, box_indices = roi_lab.to_tf_boxes(boxes_image, image_size=(H, W))"),
        (dict(box_indices=torch.tensor([0, 0, 1])), ShapeError,
         "crop_and_resize(box_indices=...) expects Tensor[2], one image index per box (boxes has K = 2 rows); got "
         "Tensor[3] int64 on cpu.\nFix: pass one batch index per row of boxes, e.g. torch.zeros(2, "
         "dtype=torch.int64) when every box is on image 0"),
        (dict(box_indices=torch.tensor([[0], [1]])), ShapeError, "expects Tensor[2], one image index per box"),
        (dict(box_indices=torch.tensor([0.0, 1.0])), DTypeError,
         "crop_and_resize(box_indices=...) expects an integer tensor of image indices (int32 or int64); got "
         "Tensor[2] float32 on cpu.\nFix: convert it, e.g. box_indices.long()"),
        (dict(box_indices=torch.tensor([True, False])), DTypeError, "got Tensor[2] bool on cpu"),
        (dict(box_indices=torch.tensor([0, 2])), InputValueError,
         "crop_and_resize(box_indices=...) expects image indices in [0, 1] (image has N = 2); got 1 indices out of "
         "range, the first at box 1: 2.\nFix: index images from 0"),
        (dict(box_indices=torch.tensor([-1, 0])), InputValueError,
         "got 1 indices out of range, the first at box 0: -1.\nFix: negative indices do not count from the end here "
         "(nor in TF); use box_indices % N if you meant that"),
        (dict(boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, float("nan"), 0.8, 0.8]])), InputValueError,
         "crop_and_resize(boxes=...) expects finite coordinates; got 1 NaN/inf values, the first in row 1: "
         "[0.20000000298023224, nan, 0.800000011920929, 0.800000011920929]."),
        (dict(boxes=torch.tensor([[0.0, 0.0, float("inf"), 1.0], [0.2, 0.2, 0.8, 0.8]])), InputValueError,
         "got 1 NaN/inf values, the first in row 0"),
        (dict(boxes=BOXES.to("meta")), DeviceMismatchError,
         "crop_and_resize expects image and boxes on the same device; got image on cpu and boxes on meta.\n"
         "Fix: move them together, e.g. boxes = boxes.to(image.device)"),
        (dict(box_indices=INDEX.to("meta")), DeviceMismatchError,
         "crop_and_resize expects image and box_indices on the same device; got image on cpu and box_indices on "
         "meta."),
        (dict(crop_size=0), InputValueError,
         "crop_and_resize(crop_size=...) expects positive integer sizes; got int 0.\nFix: pass e.g. "
         "crop_size=(7, 7); a size must be at least 1"),
        (dict(crop_size=(3, -2)), InputValueError, "expects positive integer sizes; got tuple (3, -2)."),
        (dict(crop_size=(3, 3, 3)), ShapeError,
         "crop_and_resize(crop_size=...) expects an int or an (height, width) pair; got tuple (3, 3, 3)."),
        (dict(method="bicubic"), InputValueError,
         "crop_and_resize(method=...) expects method 'bilinear' or 'nearest' (the two that tf.image.crop_and_resize "
         "supports); got str 'bicubic'.\nFix: pass method='bilinear' (TF's default) or method='nearest'"),
        (dict(extrapolation_value="zero"), InputValueError,
         "crop_and_resize(extrapolation_value=...) expects a real number; got str 'zero'."),
    ],
)  # fmt: skip
def test_bad_input_errors(kwargs, error, message):
    args = dict(image=IMAGE, boxes=BOXES, box_indices=INDEX, crop_size=3) | kwargs
    image, boxes, box_indices, crop_size = (args.pop(k) for k in ("image", "boxes", "box_indices", "crop_size"))
    with pytest.raises(error, match=re.escape(message)) as info:
        crop_and_resize(image, boxes, box_indices, crop_size, **args)
    assert isinstance(info.value, RoiLabError) and isinstance(info.value, ValueError)
    assert info.value.fix


def test_batch_index_equal_to_n_is_refused_but_n_minus_one_is_fine():
    assert crop_and_resize(IMAGE, BOXES, torch.tensor([1, 1]), 2).shape == (2, 3, 2, 2)
    with pytest.raises(InputValueError, match=r"in \[0, 1\] \(image has N = 2\)"):
        crop_and_resize(IMAGE, BOXES, torch.tensor([1, 2]), 2)


def test_method_is_case_insensitive():
    assert torch.equal(crop_and_resize(IMAGE, BOXES, INDEX, 2, method="Nearest"),
                       crop_and_resize(IMAGE, BOXES, INDEX, 2, method="nearest"))  # fmt: skip
