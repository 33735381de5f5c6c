"""roi_lab.roi_align_rotated against a loop reference of detectron2's CPU kernel (written here, read from
detectron2/layers/csrc/ROIAlignRotated/ROIAlignRotated_cpu.cpp; mmcv's roi_align_rotated.cpp is the same
kernel with its aligned / clockwise flags and radians), detectron2's published test values, torchvision's
roi_align for unrotated boxes, the degree / radian and clockwise mix-ups, gradients, and the errors."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from roi_lab.errors import InputValueError, ShapeError
from roi_lab.ops.roi_align_rotated import ROIAlignRotated, RoIAlignRotated, roi_align_rotated


def _bilinear(img, y: float, x: float):
    """detectron2's bilinear_interpolate on one [C, H, W] plane at (y, x)."""
    _, h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return img.new_zeros(img.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * img[:, y_low, x_low] + hy * lx * img[:, y_low, x_high]
            + ly * hx * img[:, y_high, x_low] + ly * lx * img[:, y_high, x_high])  # fmt: skip


def loop_reference(input, rois, pooled, scale, ratio, *, aligned=True, radians=False, clockwise=False):
    """ROIAlignRotatedForward of detectron2 (and mmcv with its flags), one box, bin and sample at a time, in float64."""
    ph_n, pw_n = pooled
    x64, r64 = input.double(), rois.double()
    out = torch.zeros(len(rois), input.shape[1], ph_n, pw_n, dtype=torch.float64)
    for n, roi in enumerate(r64.tolist()):
        b, cx, cy, w, h, angle = roi
        offset = 0.5 if aligned else 0.0
        cx, cy, w, h = cx * scale - offset, cy * scale - offset, w * scale, h * scale
        theta = angle if radians else angle * math.pi / 180.0
        if clockwise:
            theta = -theta
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        bin_h, bin_w = h / ph_n, w / pw_n
        gh = ratio if ratio > 0 else math.ceil(h / ph_n)
        gw = ratio if ratio > 0 else math.ceil(w / pw_n)
        count = max(gh * gw, 1)
        c, s = math.cos(theta), math.sin(theta)
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = x64.new_zeros(input.shape[1])
                for iy in range(gh):
                    yy = -h / 2 + ph * bin_h + (iy + 0.5) * bin_h / gh
                    for ix in range(gw):
                        xx = -w / 2 + pw * bin_w + (ix + 0.5) * bin_w / gw
                        acc += _bilinear(x64[int(b)], yy * c - xx * s + cy, yy * s + xx * c + cx)
                out[n, :, ph, pw] = acc / count
    return out


def random_rois(gen, n, h, w, scale, k=9, radians=False):
    centre = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) / scale * 1.4 - 0.2 / scale
    size = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) / scale
    size[0] = 0.0  # an empty box
    angle = torch.rand(k, 1, generator=gen, dtype=torch.float64) * 360 - 180
    if radians:
        angle = angle * math.pi / 180
    angle[1] = 90.0 if not radians else math.pi / 2
    batch = torch.randint(0, n, (k, 1), generator=gen).double()
    return torch.cat([batch, centre, size, angle], 1)


@pytest.mark.parametrize("ratio", [0, 1, 2, 3])
@pytest.mark.parametrize("scale", [1.0, 0.5, 1 / 3])
def test_matches_loop_reference_of_detectron2(ratio, scale):
    gen = torch.Generator().manual_seed(17 + ratio + int(10 * scale))
    for case in range(4):
        h, w = (int(v) for v in torch.randint(1, 14, (2,), generator=gen))
        n, c = 2, 3
        x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
        rois = random_rois(gen, n, h, w, scale)
        pooled = (int(torch.randint(1, 5, (1,), generator=gen)), int(torch.randint(1, 5, (1,), generator=gen)))
        ref = loop_reference(x, rois, pooled, scale, ratio)
        out = roi_align_rotated(x, rois, pooled, scale, ratio, angle_unit="degrees")
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10, msg=f"case {case}")
        torch.testing.assert_close(ROIAlignRotated(pooled, scale, ratio)(x, rois), out, atol=0, rtol=0)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("clockwise", [False, True])
def test_matches_loop_reference_of_mmcv(aligned, clockwise):
    gen = torch.Generator().manual_seed(3 + aligned + 2 * clockwise)
    x = torch.randn(2, 2, 11, 9, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 11, 9, 0.5, radians=True)
    ref = loop_reference(x, rois, (3, 2), 0.5, 0, aligned=aligned, radians=True, clockwise=clockwise)
    out = roi_align_rotated(x, rois, (3, 2), 0.5, 0, aligned, angle_unit="radians", clockwise=clockwise)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(RoIAlignRotated((3, 2), 0.5, 0, aligned, clockwise)(x, rois), out, atol=0, rtol=0)


def _rot90(img, num):
    for _ in range(num % 4):
        img = img.transpose(0, 1).flip(0)
    return img


@pytest.mark.parametrize("quarter", range(4))
def test_detectron2_published_0_90_180_270(quarter):
    # detectron2/tests/layers/test_roi_align_rotated.py::test_forward_output_0_90_180_270: box [1, 1, 3, 3]
    # on arange(25) 5 x 5, resolution 4 x 4, spatial_scale 1, sampling_ratio 0
    img = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    expected = torch.tensor(
        [[4.5, 5.0, 5.5, 6.0], [7.0, 7.5, 8.0, 8.5], [9.5, 10.0, 10.5, 11.0], [12.0, 12.5, 13.0, 13.5]]
    )
    out = roi_align_rotated(img, torch.tensor([[0.0, 2, 2, 2, 2, 90.0 * quarter]]), (4, 4), 1.0, 0,
                            angle_unit="degrees")  # fmt: skip
    torch.testing.assert_close(out[0, 0], _rot90(expected, -quarter))  # rotating the box CCW turns the crop CW


def test_detectron2_published_empty_box():
    # detectron2's test_empty_box: a 0 x 0 box at (2, 3) pools 7 x 7 zeros
    out = roi_align_rotated(torch.rand(1, 1, 5, 5), torch.tensor([[0.0, 2, 3, 0, 0, 0]]), 7, angle_unit="degrees")
    assert torch.equal(out, torch.zeros(1, 1, 7, 7))


@pytest.mark.parametrize("ratio", [-1, 0, 2])
def test_unrotated_equals_torchvision_aligned(ratio):
    # at angle 0 the rotated kernel is ROIAlign with aligned=True (no legacy size clamp): torchvision's own op
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 16, 20, generator=gen)
    xyxy = torch.rand(10, 4, generator=gen) * 60
    xyxy[:, 2:] = xyxy[:, :2] + torch.rand(10, 2, generator=gen) * 30
    batch = torch.randint(0, 2, (10, 1), generator=gen).float()
    rotated = torch.cat([batch, (xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2], torch.zeros(10, 1)], 1)
    ref = torchvision.ops.roi_align(x, torch.cat([batch, xyxy], 1), (3, 4), 0.25, ratio, aligned=True)
    out = roi_align_rotated(x, rotated, (3, 4), 0.25, ratio, angle_unit="degrees")
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


def test_degree_radian_and_clockwise_mix_ups_are_not_small():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 8, 32, 32, generator=gen)
    rois_deg = torch.tensor([[0.0, 16, 16, 20, 8, 30.0]])
    meant = roi_align_rotated(x, rois_deg, 7, angle_unit="degrees")
    as_radians = roi_align_rotated(x, rois_deg, 7, angle_unit="radians")  # 30 rad: 1718.9 degrees
    rad_as_degrees = roi_align_rotated(x, torch.tensor([[0.0, 16, 16, 20, 8, math.radians(30)]]), 7,
                                       angle_unit="degrees")  # 0.52 degrees: nearly unrotated  # fmt: skip
    flipped = roi_align_rotated(x, torch.tensor([[0.0, 16, 16, 20, 8, math.radians(30)]]), 7,
                                angle_unit="radians", clockwise=True)  # fmt: skip
    also_meant = roi_align_rotated(x, torch.tensor([[0.0, 16, 16, 20, 8, -math.radians(30)]]), 7,
                                   angle_unit="radians", clockwise=True)  # fmt: skip
    torch.testing.assert_close(also_meant, meant, atol=1e-5, rtol=1e-5)  # mmcv clockwise with -theta == detectron2
    for wrong in (as_radians, rad_as_degrees, flipped):
        assert (wrong - meant).abs().mean() > 0.2 * meant.abs().mean()


def test_memory_formats_and_half():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 12, 10, generator=gen)
    rois = random_rois(gen, 2, 12, 10, 1.0).float()
    ref = roi_align_rotated(x, rois, 3, angle_unit="degrees")
    for y in (x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
        torch.testing.assert_close(roi_align_rotated(y, rois, 3, angle_unit="degrees"), ref, atol=0, rtol=0)
    half = roi_align_rotated(x.half(), rois.half(), 3, angle_unit="degrees")  # computed in float32, as detectron2
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), roi_align_rotated(x.half().float(), rois.half().float(), 3,
                                                               angle_unit="degrees"), atol=2e-3, rtol=2e-3)


def test_list_of_boxes_equals_rows():
    x = torch.randn(2, 2, 10, 10)
    boxes = [torch.tensor([[5.0, 5, 4, 3, 10]]), torch.tensor([[2.0, 7, 6, 2, -45], [4, 4, 3, 3, 0]])]
    rois = torch.cat([torch.tensor([[0.0], [1], [1]]), torch.cat(boxes)], 1)
    torch.testing.assert_close(roi_align_rotated(x, boxes, 2, angle_unit="degrees"),
                               roi_align_rotated(x, rois, 2, angle_unit="degrees"), atol=0, rtol=0)  # fmt: skip


def test_gradients():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0.0, 4, 4, 5, 3, 30], [0, 1, 6, 2, 4, -100], [0, 7, 7, 8, 8, 45]], dtype=torch.float64)
    for ratio in (0, 2):
        f = lambda t, ratio=ratio: roi_align_rotated(t, rois, (2, 3), 1.0, ratio, angle_unit="degrees")  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))


def test_opcheck_and_compile():
    x = torch.randn(2, 3, 12, 12)
    rois = torch.tensor([[0.0, 5, 5, 6, 4, 20], [1, 8, 3, 3, 9, -60]])
    torch.library.opcheck(torch.ops.roi_lab.roi_align_rotated.default, (x, rois, 0.5, 3, 3, 0, True, False, False))
    f = lambda t: roi_align_rotated(t, rois, 3, 0.5, angle_unit="degrees")  # noqa: E731
    torch.testing.assert_close(torch.compile(f, fullgraph=True)(x), f(x))


def test_errors_say_what_to_do():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(InputValueError) as err:
        roi_align_rotated(x, torch.tensor([[0.0, 4, 4, -2, 3, 0]]), 2, angle_unit="degrees")
    assert "detectron2 asserts 'ROIs in ROIAlignRotated do not have non-negative size!'" in str(err.value)
    assert "got 1 boxes with w < 0 or h < 0, the first is row 0: [0.0, 4.0, 4.0, -2.0, 3.0, 0.0]" in str(err.value)
    # mmcv's legacy mode clamps the size instead, like its kernel
    assert roi_align_rotated(x, torch.tensor([[0.0, 4, 4, -2, 3, 0]]), 2, aligned=False, angle_unit="radians").shape
    with pytest.raises(InputValueError) as err:
        roi_align_rotated(x, torch.tensor([[0.0, 4, 4, 2, 3, 0]]), 2, angle_unit="deg")
    assert str(err.value) == (
        "roi_align_rotated(angle_unit=...) expects \"degrees\" (detectron2 ROIAlignRotated) or \"radians\" (mmcv "
        "roi_align_rotated); got str 'deg'.\nFix: say which framework the boxes come from: angle_unit=\"degrees\" for "
        "detectron2's RotatedBoxes, angle_unit=\"radians\" for mmcv / mmrotate"
    )
    with pytest.raises(TypeError, match="angle_unit"):
        roi_align_rotated(x, torch.tensor([[0.0, 4, 4, 2, 3, 0]]), 2)  # the unit must be said
    with pytest.raises(ShapeError) as err:
        roi_align_rotated(x, torch.zeros(3, 5), 2, angle_unit="degrees")
    assert str(err.value) == (
        "roi_align_rotated(boxes=...) expects boxes as Tensor[K, 6] (batch_index, cx, cy, w, h, angle) or a list "
        "of Tensor[L, 5]; got Tensor[3, 5] float32 on cpu.\nFix: add the batch-index column, e.g. "
        "torch.cat([torch.zeros(3, 1), boxes], 1), or pass [boxes]"
    )
    with pytest.raises(InputValueError, match="an adaptive sample grid of at most 268435456 samples"):
        roi_align_rotated(x, torch.tensor([[0.0, 4, 4, 1e6, 1e6, 0]]), 2, angle_unit="degrees")


@pytest.mark.cuda
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 12, 10, generator=gen)
    rois = random_rois(gen, 2, 12, 10, 1.0).float()
    ref = roi_align_rotated(x, rois, 3, angle_unit="degrees")
    torch.testing.assert_close(roi_align_rotated(x.cuda(), rois.cuda(), 3, angle_unit="degrees").cpu(), ref,
                               atol=1e-5, rtol=1e-5)  # fmt: skip
