"""roi_lab.roi_align against torchvision's compiled kernel, upstream published values, a loop
reference for mmcv's max mode, and every bad input with its message."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

import roi_lab.ops._roi_align_kernel as roi_align_module
from roi_lab.errors import DeviceMismatchError, DTypeError, InputValueError, ShapeError
from roi_lab.ops.roi_align import roi_align

tv_roi_align = torchvision.ops.roi_align

# forward / gradient tolerances per dtype. float16 is checked against torchvision in float32 on the
# same (half-rounded) map and boxes: roi_align computes half geometry in float32 (see its docstring)
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
}


def random_case(gen: torch.Generator, dtype: torch.dtype, aligned: bool, sampling_ratio: int, inverted: bool):
    """A small random map and boxes that reach outside the map, degenerate and (optionally) inverted."""
    n = int(torch.randint(1, 3, (1,), generator=gen))
    c = int(torch.randint(1, 4, (1,), generator=gen))
    h = int(torch.randint(1, 13, (1,), generator=gen))
    w = int(torch.randint(1, 13, (1,), generator=gen))
    scale = [1.0, 0.5, 0.25, 1 / 3][int(torch.randint(0, 4, (1,), generator=gen))]
    k = 7
    size = torch.tensor([w, h, w, h], dtype=torch.float64) / scale
    xyxy = torch.rand(k, 4, generator=gen, dtype=torch.float64) * size * 1.6 - size * 0.3  # [K, 4]
    if not inverted:
        xyxy[:, 2:] = torch.maximum(xyxy[:, 2:], xyxy[:, :2])
    xyxy[0, 2:] = xyxy[0, :2]  # a zero-size box
    xyxy[1] = torch.tensor([-30.0, -30.0, -20.0, -20.0]) / scale  # entirely outside the map
    batch = torch.randint(0, n, (k, 1), generator=gen).to(torch.float64)
    rois = torch.cat([batch, xyxy], 1).to(dtype)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype)
    pooled = (int(torch.randint(1, 5, (1,), generator=gen)), int(torch.randint(1, 5, (1,), generator=gen)))
    return x, rois, pooled, scale


def run_both(x, rois, pooled, scale, sampling_ratio, aligned, grad_seed=0):
    """torchvision (in float32 for half inputs) and roi_lab on the same values, forward and gradient."""
    oracle_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    x_ref = x.detach().to(oracle_dtype).clone().requires_grad_()
    x_our = x.detach().clone().requires_grad_()
    ref = tv_roi_align(x_ref, rois.to(oracle_dtype), pooled, scale, sampling_ratio, aligned)
    out = roi_align(x_our, rois, pooled, scale, sampling_ratio, aligned)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64).to(x.dtype)
    (ref.double() * g.double()).sum().backward()
    (out.double() * g.double()).sum().backward()
    return ref.to(x.dtype), out, x_ref.grad.to(x.dtype), x_our.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_matches_torchvision_random(dtype, aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(1000 * sampling_ratio + 10 * aligned + int(dtype.itemsize))
    # torchvision's CPU kernel crashes on inverted boxes with adaptive sampling and aligned=True
    inverted = not (aligned and sampling_ratio <= 0)
    atol, gtol = TOL[dtype]
    for case in range(12):
        x, rois, pooled, scale = random_case(gen, dtype, aligned, sampling_ratio, inverted)
        ref, out, g_ref, g_our = run_both(x, rois, pooled, scale, sampling_ratio, aligned, case)
        assert out.dtype == dtype and out.shape == ref.shape and out.is_contiguous()
        scale_g = max(1.0, float(g_ref.abs().max()))
        torch.testing.assert_close(out, ref, atol=atol, rtol=atol, msg=f"forward, case {case}")
        torch.testing.assert_close(g_our, g_ref, atol=gtol * scale_g, rtol=gtol, msg=f"gradient, case {case}")


def test_inverted_boxes_sample_backwards_like_torchvision():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    rois = torch.tensor([[0, 5.0, 4.0, 1.0, 0.5]])  # x2 < x1 and y2 < y1
    for aligned in (False, True):
        ref = tv_roi_align(x, rois, 3, 1.0, 2, aligned)
        torch.testing.assert_close(roi_align(x, rois, 3, 1.0, 2, aligned), ref)
        assert not torch.equal(ref, torch.zeros_like(ref))  # a real, non-trivial oracle


def test_inverted_adaptive_aligned_gives_zeros():
    # torchvision's CPU kernel crashes here; its CUDA kernel returns zeros, and so do we
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    out = roi_align(x, torch.tensor([[0, 5.0, 4.0, 1.0, 0.5]]), 3, 1.0, 0, True)
    assert torch.equal(out, torch.zeros(1, 2, 3, 3))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_adaptive_grid_is_computed_in_the_input_dtype():
    # roi width 7 * (1 + 1e-9): ceil(width / 7) is 2 in float64 but the width rounds to 7.0 in float32 (grid 1)
    rois = torch.tensor([[0, 0.5, 0.0, 7.500000007, 7.0]], dtype=torch.float64)
    x = torch.randn(1, 1, 10, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out64 = roi_align(x, rois, 7, 1.0, 0, False)
    out32 = roi_align(x.float(), rois, 7, 1.0, 0, False)
    torch.testing.assert_close(out64, tv_roi_align(x, rois, 7, 1.0, 0, False), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out32, tv_roi_align(x.float(), rois.float(), 7, 1.0, 0, False))
    assert (out64.float() - out32).abs().max() > 1e-3  # the grids really differ


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.to(memory_format=torch.channels_last),
        lambda x: x.transpose(2, 3).contiguous().transpose(2, 3),
        lambda x: torch.stack([x, -x], 2).flatten(1, 2)[:, ::2],
    ],
    ids=["channels_last", "transposed", "strided_channels"],
)
def test_memory_formats(make):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 9, 11, generator=gen)
    rois = torch.tensor([[0, 1.0, 2, 7, 8], [1, 0, 0, 11, 9], [0, -3, -2, 4, 20], [1, 10.5, 8, 12, 9.5]])
    xi = make(x).requires_grad_()
    x_ref = x.clone().requires_grad_()
    ref = tv_roi_align(x_ref, rois, 3, 1.0, 2, True)
    out = roi_align(xi, rois, 3, 1.0, 2, True)
    torch.testing.assert_close(out, ref)
    g = torch.randn(ref.shape, generator=gen)
    (ref * g).sum().backward()
    (out * g).sum().backward()
    torch.testing.assert_close(xi.grad, x_ref.grad)


def test_bfloat16_on_exactly_representable_samples():
    # torchvision has no bfloat16 CPU kernel; with integer boxes and bins of 2 px every sample
    # position is exact in bfloat16, so torchvision in float32 on the same values is the oracle
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 8, 8, generator=gen).bfloat16()
    rois = torch.tensor([[0, 1.0, 1, 5, 5], [0, 0, 2, 4, 6], [0, 3, 3, 7, 7]])
    out = roi_align(x, rois, 2, 1.0, 2, True)
    assert out.dtype == torch.bfloat16
    ref = tv_roi_align(x.float(), rois, 2, 1.0, 2, True)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=1e-2)


def test_float16_boxes_are_cast_like_the_input():
    x = torch.randn(1, 2, 12, 12, dtype=torch.float64)
    rois64 = torch.tensor([[0, 1.1, 2.2, 9.3, 10.4]], dtype=torch.float64)
    out = roi_align(x, rois64.float(), 3, 1.0, 2, True)  # float32 boxes, float64 map
    torch.testing.assert_close(out, tv_roi_align(x, rois64.float().double(), 3, 1.0, 2, True))


def test_list_of_boxes_equals_rows_with_batch_index():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 10, 10, generator=gen)
    boxes = [torch.tensor([[1.0, 1, 6, 7]]), torch.zeros(0, 4), torch.tensor([[0.0, 2, 9, 9], [3, 3, 4, 8]])]
    rois = torch.tensor([[0, 1.0, 1, 6, 7], [2, 0, 2, 9, 9], [2, 3, 3, 4, 8]])
    torch.testing.assert_close(roi_align(x, boxes, 2, 1.0, 2), tv_roi_align(x, rois, 2, 1.0, 2))
    torch.testing.assert_close(roi_align(x, boxes, 2, 1.0, 2), tv_roi_align(x, boxes, 2, 1.0, 2))


def test_integer_boxes_are_accepted():
    x = torch.randn(1, 1, 6, 6)
    out = roi_align(x, torch.tensor([[0, 1, 1, 4, 4]]), 2, 1.0, 2)
    torch.testing.assert_close(out, tv_roi_align(x, torch.tensor([[0, 1.0, 1, 4, 4]]), 2, 1.0, 2))


def test_empty_boxes_give_empty_result_with_grad():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4)], [torch.zeros(0, 4), torch.zeros(0, 4)], []):
        out = roi_align(x, boxes, (7, 6))
        assert out.shape == (0, 3, 7, 6)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_empty_batch():
    # detectron2 tests/layers/test_roi_align.py::test_empty_batch
    out = roi_align(torch.zeros(0, 3, 10, 10), torch.zeros(0, 5), (7, 7), 1.0, 0, True)
    assert out.shape == (0, 3, 7, 7)


@pytest.mark.parametrize("bucket_elements, map_elements", [(64, 1 << 23), (1 << 22, 50), (64, 50)])
def test_chunked_paths_agree(monkeypatch, bucket_elements, map_elements):
    """Tiny budgets force one box per bucket and one channel per map block."""
    monkeypatch.setattr(roi_align_module, "_BUCKET_ELEMENTS", bucket_elements)
    monkeypatch.setattr(roi_align_module, "_MAP_BLOCK_ELEMENTS", map_elements)
    gen = torch.Generator().manual_seed(6)
    x, rois, pooled, scale = random_case(gen, torch.float64, True, 2, True)
    ref, out, g_ref, g_our = run_both(x, rois, pooled, scale, 2, True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g_our, g_ref)


def test_geometry_groups_agree(monkeypatch):
    monkeypatch.setattr(roi_align_module, "_GEOMETRY_ELEMENTS", 1)
    gen = torch.Generator().manual_seed(7)
    x, rois, pooled, scale = random_case(gen, torch.float64, False, -1, True)
    ref, out, g_ref, g_our = run_both(x, rois, pooled, scale, -1, False)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g_our, g_ref)


def test_feature_map_realistic_scale():
    """A stride-8 FPN level with boxes of 8-208 px, both aligned settings."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 16, 50, 76, generator=gen)
    size = torch.rand(64, 2, generator=gen) * 200 + 8
    centre = torch.rand(64, 2, generator=gen) * torch.tensor([608.0, 400.0])
    rois = torch.cat([torch.randint(0, 2, (64, 1), generator=gen).float(), centre - size / 2, centre + size / 2], 1)
    for aligned, ratio in ((True, 2), (False, -1), (True, 0)):
        ref = tv_roi_align(x, rois, 7, 1 / 8, ratio, aligned)
        torch.testing.assert_close(roi_align(x, rois, 7, 1 / 8, ratio, aligned), ref)


# --------------------------------------------------------------------------------------------------
# published values of the upstream suites


def test_detectron2_5x5_arange():
    """detectron2 tests/layers/test_roi_align.py::test_forward_output (sampling_ratio=0)."""
    x = torch.arange(25.0).view(1, 1, 5, 5)
    rois = torch.tensor([[0, 1.0, 1, 3, 3]])
    old_results = [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]
    correct_results = [[4.5, 5.0, 5.5, 6.0], [7.0, 7.5, 8.0, 8.5], [9.5, 10.0, 10.5, 11.0], [12.0, 12.5, 13.0, 13.5]]
    torch.testing.assert_close(roi_align(x, rois, 4, 1.0, 0, False)[0, 0], torch.tensor(old_results))
    torch.testing.assert_close(roi_align(x, rois, 4, 1.0, 0, True)[0, 0], torch.tensor(correct_results))


def test_detectron2_empty_box():
    """detectron2 test_empty_box: a zero-height aligned box pools zeros and has zero gradient."""
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    out = roi_align(x, torch.tensor([[0, 3.0, 4, 5, 4]], dtype=torch.float64), 7, 1.0, 0, True)
    assert out.shape == (1, 1, 7, 7) and bool((out == 0).all())
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


MMCV_CASES = [
    # (input, rois, output, grad of sum(output)) from mmcv tests/test_ops/test_roi_align.py
    (
        [[[[1.0, 2.0], [3.0, 4.0]]]],
        [[0.0, 0.0, 0.0, 1.0, 1.0]],
        [[[[1.0, 1.25], [1.5, 1.75]]]],
        [[[[3.0625, 0.4375], [0.4375, 0.0625]]]],
    ),
    (
        [[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 3.0], [2.0, 1.0]]]],
        [[0.0, 0.0, 0.0, 1.0, 1.0]],
        [[[[1.0, 1.25], [1.5, 1.75]], [[4.0, 3.75], [3.5, 3.25]]]],
        [[[[3.0625, 0.4375], [0.4375, 0.0625]], [[3.0625, 0.4375], [0.4375, 0.0625]]]],
    ),
    (
        [[[[1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0], [9.0, 10.0, 13.0, 14.0], [11.0, 12.0, 15.0, 16.0]]]],
        [[0.0, 0.0, 0.0, 3.0, 3.0]],
        [[[[1.9375, 4.75], [7.5625, 10.375]]]],
        [
            [
                [
                    [0.47265625, 0.42968750, 0.42968750, 0.04296875],
                    [0.42968750, 0.39062500, 0.39062500, 0.03906250],
                    [0.42968750, 0.39062500, 0.39062500, 0.03906250],
                    [0.04296875, 0.03906250, 0.03906250, 0.00390625],
                ]
            ]
        ],
    ),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("case", range(len(MMCV_CASES)))
def test_mmcv_2x2_cases_with_gradients(case, dtype):
    """mmcv test_roialign: pool 2x2, spatial_scale 1, sampling_ratio 2, aligned=True, atol 1e-3."""
    x_list, rois_list, expected, expected_grad = MMCV_CASES[case]
    x = torch.tensor(x_list, dtype=dtype, requires_grad=True)
    out = roi_align(x, torch.tensor(rois_list, dtype=dtype), (2, 2), 1.0, 2, True)
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(out.float(), torch.tensor(expected), atol=1e-3, rtol=0)
    torch.testing.assert_close(x.grad.float(), torch.tensor(expected_grad), atol=1e-3, rtol=0)


def test_mmcv_gradcheck_double():
    """mmcv runs gradcheck in float64 on the same cases."""
    for x_list, rois_list, _, _ in MMCV_CASES:
        x = torch.tensor(x_list, dtype=torch.float64, requires_grad=True)
        rois = torch.tensor(rois_list, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda t, r=rois: roi_align(t, r, (2, 2), 1.0, 2, True), (x,), eps=1e-5, atol=1e-5
        )


# --------------------------------------------------------------------------------------------------
# max mode against a loop reference of mmcv's kernel


def max_reference(x, rois, pooled, scale, ratio, aligned):
    """mmcv ROIAlignForward (pool_mode 0) as plain loops over torch scalars, differentiable."""
    n, c, h, w = x.shape
    ph_n, pw_n = pooled
    out = []
    for roi in rois.tolist():
        b = int(roi[0])
        offset = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (v * scale - offset for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = ratio if ratio > 0 else math.ceil(rh / ph_n)
        gw = ratio if ratio > 0 else math.ceil(rw / pw_n)
        per_channel = []
        for ch in range(c):
            plane = x[b, ch]
            bins = []
            for ph in range(ph_n):
                row = []
                for pw in range(pw_n):
                    best = None
                    for iy in range(gh):
                        yy = y1 + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            xx = x1 + pw * bw + (ix + 0.5) * bw / gw
                            if yy < -1.0 or yy > h or xx < -1.0 or xx > w:
                                val = plane.new_zeros(())
                            else:
                                y, xq = max(yy, 0.0), max(xx, 0.0)
                                yl, xl = int(y), int(xq)
                                yh, xh = yl + 1, xl + 1
                                if yl >= h - 1:
                                    yh = yl = h - 1
                                    y = float(yl)
                                if xl >= w - 1:
                                    xh = xl = w - 1
                                    xq = float(xl)
                                ly, lx = y - yl, xq - xl
                                hy, hx = 1 - ly, 1 - lx
                                val = (
                                    hy * hx * plane[yl, xl]
                                    + hy * lx * plane[yl, xh]
                                    + ly * hx * plane[yh, xl]
                                    + ly * lx * plane[yh, xh]
                                )
                            if best is None or val > best:
                                best = val
                    row.append(best if best is not None else plane.new_zeros(()))
                bins.append(torch.stack(row))
            per_channel.append(torch.stack(bins))
        out.append(torch.stack(per_channel))
    return torch.stack(out)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [-1, 2, 3])
def test_max_mode_matches_loop_reference(aligned, ratio):
    gen = torch.Generator().manual_seed(9 + ratio + 10 * aligned)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64)
    rois = torch.tensor(
        [[0, 0.5, 1.0, 5.0, 4.5], [1, -2.0, -1.0, 3.0, 9.0], [1, 2.0, 2.0, 2.5, 2.2], [0, 4.0, 3.0, 14.0, 11.0]],
        dtype=torch.float64,
    )
    x_ref = x.clone().requires_grad_()
    x_our = x.clone().requires_grad_()
    ref = max_reference(x_ref, rois, (2, 3), 1.0, ratio, aligned)
    out = roi_align(x_our, rois, (2, 3), 1.0, ratio, aligned, mode="max")
    torch.testing.assert_close(out, ref)
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    (ref * g).sum().backward()
    (out * g).sum().backward()
    torch.testing.assert_close(x_our.grad, x_ref.grad)


def test_max_mode_differs_from_avg_and_is_an_upper_bound():
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    rois = torch.tensor([[0, 0.0, 0, 8, 8], [0, 2, 1, 6, 7]])
    avg = roi_align(x, rois, 2, 1.0, 3, True)
    mx = roi_align(x, rois, 2, 1.0, 3, True, mode="max")
    assert bool((mx >= avg - 1e-6).all()) and not torch.allclose(mx, avg)


# --------------------------------------------------------------------------------------------------
# property tests


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    coords=st.lists(st.floats(-12, 20, allow_nan=False, width=32), min_size=4, max_size=4),
    pooled=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    ratio=st.integers(-1, 3),
    aligned=st.booleans(),
    scale=st.sampled_from([1.0, 0.5, 2.0]),
)
def test_property_equals_torchvision(h, w, coords, pooled, ratio, aligned, scale):
    x1, y1, x2, y2 = coords
    if aligned and ratio <= 0:  # torchvision's CPU kernel crashes on inverted boxes here
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    x = torch.randn(1, 2, h, w, generator=torch.Generator().manual_seed(h * 10 + w), dtype=torch.float64)
    rois = torch.tensor([[0, x1, y1, x2, y2]], dtype=torch.float64)
    ref, out, g_ref, g_our = run_both(x, rois, pooled, scale, ratio, aligned)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(g_our, g_ref, atol=1e-10, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(-3, 3, allow_nan=False), shift=st.floats(-2, 2, allow_nan=False))
def test_property_linear_in_the_map(a, shift):
    """Pooling is linear: avg(a*x + y) = a*avg(x) + avg(y); a constant map pools to the constant
    wherever every sample lands inside [-1, H] x [-1, W]."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1, 2, 7, 7, generator=gen, dtype=torch.float64)
    y = torch.randn(1, 2, 7, 7, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 0.5, 1.0, 5.0, 6.5], [0, 2.0 + shift, 1.0, 6.0, 3.0 + shift]], dtype=torch.float64)
    lhs = roi_align(a * x + y, rois, 3, 1.0, 2, True)
    torch.testing.assert_close(lhs, a * roi_align(x, rois, 3, 1.0, 2, True) + roi_align(y, rois, 3, 1.0, 2, True))
    const = roi_align(torch.full((1, 1, 7, 7), 2.5, dtype=torch.float64), rois, 3, 1.0, 2, True)
    torch.testing.assert_close(const, torch.full_like(const, 2.5))


# --------------------------------------------------------------------------------------------------
# bad inputs: every message pinned


def test_boxes_k4_says_add_the_batch_index_column():
    with pytest.raises(ShapeError) as e:
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(12, 4), 7)
    text = str(e.value)
    assert "roi_align(boxes=...) expects boxes as Tensor[K, 5] (batch_index, x1, y1, x2, y2)" in text
    assert "got Tensor[12, 4] float32 on cpu" in text
    assert "add the batch-index column, e.g. torch.cat([torch.zeros(12, 1), boxes], 1), or pass [boxes]" in text
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "boxes, fix",
    [
        (torch.zeros(4), "boxes[None], and a batch index"),
        (torch.zeros(5), "a single box needs a leading box dimension: boxes[None]"),
        (torch.zeros(2, 3, 5), "pass boxes as Tensor[K, 5] rows"),
        (torch.zeros(3, 6), "pass boxes as Tensor[K, 5] rows"),
        ("boxes", "pass boxes as Tensor[K, 5] rows"),
    ],
)
def test_boxes_wrong_rank_or_width(boxes, fix):
    with pytest.raises(ShapeError, match="Tensor\\[K, 5\\]") as e:
        roi_align(torch.zeros(1, 3, 8, 8), boxes, 7)
    assert fix in e.value.fix


def test_input_wrong_rank_and_dtype():
    with pytest.raises(ShapeError, match=r"a feature map Tensor\[N, C, H, W\]; got Tensor\[3, 8, 8\]") as e:
        roi_align(torch.zeros(3, 8, 8), torch.zeros(1, 5), 7)
    assert "x[None]" in e.value.fix
    with pytest.raises(DTypeError, match="a floating feature map.*got Tensor\\[1, 3, 8, 8\\] int64"):
        roi_align(torch.zeros(1, 3, 8, 8, dtype=torch.long), torch.zeros(1, 5), 7)


@pytest.mark.parametrize("index", [-1.0, 2.0, 0.5])
def test_bad_batch_index(index):
    rois = torch.tensor([[0, 1.0, 1, 4, 4], [index, 1.0, 1, 4, 4]])
    with pytest.raises(InputValueError) as e:
        roi_align(torch.zeros(2, 3, 8, 8), rois, 7)
    text = str(e.value)
    assert "batch indices in column 0 that are integers in [0, 1] (input has N=2)" in text
    assert f"1 bad rows, the first is row 1: [{index}, 1.0, 1.0, 4.0, 4.0]" in text
    assert "column 0 is the image index" in text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_boxes(bad):
    rois = torch.tensor([[0, 1.0, 1, 4, 4], [0, 1.0, bad, 4, 4]])
    with pytest.raises(InputValueError, match="expects finite coordinates; got 1 NaN/inf values, the first in row 1"):
        roi_align(torch.zeros(1, 3, 8, 8), rois, 7)
    with pytest.raises(InputValueError, match="finite coordinates"):
        roi_align(torch.zeros(1, 3, 8, 8), [rois[:, 1:]], 7)


def test_device_mismatch_names_both_devices():
    with pytest.raises(DeviceMismatchError) as e:
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5, device="meta"), 7)
    assert "input and boxes on the same device; got input on cpu and boxes on meta" in str(e.value)
    assert "boxes = boxes.to(input.device)" in e.value.fix
    with pytest.raises(DeviceMismatchError, match="boxes on meta"):
        roi_align(torch.zeros(1, 3, 8, 8), [torch.zeros(1, 4, device="meta")], 7)


@pytest.mark.parametrize("size", [0, -1, (7, 0), (0, 7)])
def test_non_positive_output_size(size):
    with pytest.raises(InputValueError, match=r"roi_align\(output_size=...\) expects positive integer sizes"):
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5), size)


@pytest.mark.parametrize("size", [(7,), (7, 7, 7), 7.0])
def test_malformed_output_size(size):
    with pytest.raises(ShapeError, match="an int or an \\(height, width\\) pair"):
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5), size)


def test_list_item_with_wrong_width():
    with pytest.raises(ShapeError) as e:
        roi_align(torch.zeros(2, 3, 8, 8), [torch.zeros(2, 4), torch.zeros(3, 5)], 7)
    assert "a list with one Tensor[L, 4] (x1, y1, x2, y2) per image; got item 1 is Tensor[3, 5]" in str(e.value)
    assert "torch.zeros(0, 4)" in e.value.fix


def test_list_longer_than_batch():
    with pytest.raises(InputValueError, match="at most N=1 tensors, one per image of input; got a list of 2 tensors"):
        roi_align(torch.zeros(1, 3, 8, 8), [torch.zeros(2, 4), torch.zeros(1, 4)], 7)


@pytest.mark.parametrize("scale", [0.0, -0.25, float("nan"), float("inf"), "1/16", True])
def test_bad_spatial_scale(scale):
    with pytest.raises(InputValueError, match="a finite positive float, feature px per image px"):
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5), 7, spatial_scale=scale)


def test_bad_sampling_ratio_and_mode():
    with pytest.raises(
        InputValueError, match="an int \\(samples per bin and axis; <= 0 for adaptive\\); got float 2.0"
    ):
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5), 7, sampling_ratio=2.0)
    with pytest.raises(InputValueError, match='mode "avg" \\(torchvision\\) or "max" \\(mmcv\\); got str \'mean\''):
        roi_align(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5), 7, mode="mean")


def test_absurd_adaptive_grid_is_refused_not_allocated():
    # a box of 1e9 px with adaptive sampling would need ~1e8 samples per bin: torchvision hangs
    with pytest.raises(InputValueError) as e:
        roi_align(torch.zeros(1, 1, 8, 8), torch.tensor([[0, 0.0, 0.0, 1e9, 4.0]]), 7, 1.0, 0)
    text = str(e.value)
    assert "adaptive sampling grids of at most 1048576 samples per box and axis" in text
    assert "got box 0 [0.0, 0.0, 0.0, 1000000000.0, 4.0] spans 142857136 samples per bin" in text
    assert "pass a fixed sampling_ratio" in e.value.fix
    assert roi_align(torch.zeros(1, 1, 8, 8), torch.tensor([[0, 0.0, 0.0, 1e9, 4.0]]), 7, 1.0, 2).shape == (1, 1, 7, 7)


# --------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_torchvision(dtype):
    gen = torch.Generator().manual_seed(12)
    for aligned, ratio in ((True, 2), (False, -1), (True, 0)):
        x, rois, pooled, scale = random_case(gen, dtype, aligned, ratio, inverted=not (aligned and ratio <= 0))
        ref, out, g_ref, g_our = run_both(x.cuda(), rois.cuda(), pooled, scale, ratio, aligned)
        atol, gtol = TOL[dtype]
        torch.testing.assert_close(out, ref, atol=atol, rtol=atol)
        torch.testing.assert_close(g_our, g_ref, atol=gtol * max(1.0, float(g_ref.abs().max())), rtol=gtol)


def _host_syncs(fn) -> int:
    """How many CUDA host synchronisations ``fn()`` makes (torch's sync debug mode warns on each)."""
    import warnings

    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.cuda
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_cuda_host_syncs_per_call_do_not_grow_with_the_boxes(sampling_ratio):
    """A bounded number of host syncs per call (data-dependent sizes read back once each), whatever
    the number of boxes: a per-box readback would stall the GPU once per box. The count is not the same
    for every call: a chunk that fits one sub-chunk (padded rows) reads back fewer sizes than a ragged
    one, and bags with every tap on the map skip the readback of how many remain."""
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 16, 64, 64, generator=gen).cuda()

    def rois(k):
        xy = torch.rand(k, 2, generator=gen) * 48
        wh = torch.rand(k, 2, generator=gen) * 40 + 1
        return torch.cat([torch.randint(0, 2, (k, 1), generator=gen).float(), xy, xy + wh], 1).cuda()

    counts = {}
    for k in (1, 8, 64, 200):  # one chunk of boxes each (_GEOMETRY_ELEMENTS)
        r = rois(k)
        roi_align(x, r, 14, 1.0, sampling_ratio, True)  # warm-up (lazy CUDA init syncs)
        counts[k] = _host_syncs(lambda r=r: roi_align(x, r, 14, 1.0, sampling_ratio, True))
    assert max(counts.values()) <= 12, counts  # the readbacks of one chunk of boxes (validation, plan sizes)


def test_the_callers_thread_count_is_restored_after_the_call_and_after_an_error(monkeypatch):
    """The CPU kernel runs on one intra-op thread (_one_thread) and gives the caller back its own count,
    also when the kernel raises."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x = torch.randn(1, 4, 16, 16)
        rois = torch.tensor([[0.0, 1, 1, 9, 9]])
        seen = []
        real = roi_align_module._forward
        monkeypatch.setattr(roi_align_module, "_forward", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
        expected = torchvision.ops.roi_align(x, rois, 3, 1.0, 2, True)
        torch.testing.assert_close(roi_align(x, rois, 3, 1.0, 2, True), expected)
        assert seen == [1] and torch.get_num_threads() == 2

        def boom(*a):
            raise RuntimeError("kernel failure")

        monkeypatch.setattr(roi_align_module, "_forward", boom)
        with pytest.raises(RuntimeError, match="kernel failure"):
            roi_align(x, rois, 3, 1.0, 2, True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
