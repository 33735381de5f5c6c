"""roi_lab.roi_pool against torchvision's compiled RoIPool kernel: forward, gradient, memory formats,
half precision, the registration layer (opcheck, compile), and the errors with their messages."""

from __future__ import annotations

import pytest
import torch
import torchvision

import roi_lab.ops._roi_pool_kernel as kernel
from roi_lab.errors import DTypeError, InputValueError, ShapeError
from roi_lab.ops.roi_pool import RoIPool, roi_pool


def random_case(gen: torch.Generator, dtype: torch.dtype, ties: bool):
    """A small random map and boxes: inside, outside, degenerate, inverted, and at half-cell edges."""
    n, c = 2, int(torch.randint(1, 4, (1,), generator=gen))
    h, w = int(torch.randint(1, 20, (1,), generator=gen)), int(torch.randint(1, 20, (1,), generator=gen))
    scale = [1.0, 0.5, 0.25, 1 / 16, 1 / 3][int(torch.randint(0, 5, (1,), generator=gen))]
    k = 12
    size = torch.tensor([w, h, w, h], dtype=torch.float64) / scale
    xyxy = torch.rand(k, 4, generator=gen, dtype=torch.float64) * size * 1.6 - size * 0.3  # [K, 4], some inverted
    xyxy[0, 2:] = xyxy[0, :2]  # zero size
    xyxy[1] = torch.tensor([-40.0, -40.0, -20.0, -20.0]) / scale  # entirely outside: empty bins
    xyxy[2] = (torch.round(xyxy[2] * scale * 2) / 2) / scale  # corners at .5 cells: C's round, not torch.round
    batch = torch.randint(0, n, (k, 1), generator=gen).to(torch.float64)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    if ties:
        x = x.round()  # many equal maxima: the first one in row-major order gets the gradient
    pooled = (int(torch.randint(1, 8, (1,), generator=gen)), int(torch.randint(1, 8, (1,), generator=gen)))
    return x.to(dtype), torch.cat([batch, xyxy], 1).to(dtype), pooled, scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_torchvision_forward_and_gradient(dtype, ties):
    gen = torch.Generator().manual_seed(7 + ties + 10 * dtype.itemsize)
    for case in range(25):
        x, rois, pooled, scale = random_case(gen, dtype, ties)
        xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        ref = torchvision.ops.roi_pool(xr, rois, pooled, scale)
        out = roi_pool(xo, rois, pooled, scale)
        # exact: both select one map value per bin from the same cells (bin bounds in the same float arithmetic)
        assert torch.equal(out, ref), f"forward, case {case}"
        g = torch.randn(ref.shape, generator=gen, dtype=dtype)
        ref.backward(g)
        out.backward(g)
        # the same cells receive the same gradients; sums of several bins' gradients may add in another order
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(xo.grad, xr.grad, atol=tol, rtol=tol, msg=f"gradient, case {case}")


def test_quantization_is_cs_round_half_away_from_zero():
    # x1 = 2.5 cells: C's round gives 3 (torch.round would give 2); the box then starts at column 3
    x = torch.arange(10.0).view(1, 1, 1, 10)
    rois = torch.tensor([[0.0, 2.5, 0.0, 2.5, 0.0]])
    assert roi_pool(x, rois, 1).item() == torchvision.ops.roi_pool(x, rois, 1).item() == 3.0
    starts = kernel.bin_bounds(torch.tensor([[2.5, 0.5, 3.5, 1.5]]), 1.0, (1, 1), 4, 10)
    assert [int(t) for t in starts] == [1, 3, 3, 5]  # hstart, hend, wstart, wend: +1 makes ends inclusive


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.contiguous(memory_format=torch.channels_last),
        lambda x: x.transpose(2, 3).contiguous().transpose(2, 3),
        lambda x: x[:, :, ::2, ::2],
    ],
    ids=["channels_last", "transposed", "strided"],
)
def test_memory_formats(make):
    gen = torch.Generator().manual_seed(3)
    x, rois, pooled, scale = random_case(gen, torch.float32, False)
    x = torch.randn(2, 3, 30, 26, generator=gen)
    y = make(x)
    assert torch.equal(roi_pool(y, rois, pooled, scale), torchvision.ops.roi_pool(y.contiguous(), rois, pooled, scale))


def test_half_precision_bins_in_float32():
    # torchvision has no CPU half RoIPool; half values are exact in float32, and roi_lab computes the half
    # map's bin bounds in float32: the same cells, the same maxima
    gen = torch.Generator().manual_seed(5)
    x, rois, pooled, scale = random_case(gen, torch.float32, False)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x.to(dtype)
        ref = torchvision.ops.roi_pool(xh.float(), rois.to(dtype).float(), pooled, scale).to(dtype)
        out = roi_pool(xh, rois.to(dtype), pooled, scale)
        assert out.dtype == dtype and torch.equal(out, ref)


def test_chunks_and_buckets_agree(monkeypatch):
    gen = torch.Generator().manual_seed(11)
    x, rois, pooled, scale = random_case(gen, torch.float64, True)
    whole = roi_pool(x, rois, pooled, scale)
    monkeypatch.setattr(kernel, "_CHUNK_ELEMENTS", 1)  # one box per gather
    assert torch.equal(roi_pool(x, rois, pooled, scale), whole)


def test_list_of_boxes_equals_rows_and_module():
    x = torch.randn(2, 4, 20, 20)
    boxes = [torch.tensor([[1.0, 2, 30, 40]]), torch.tensor([[5.0, 5, 60, 70], [0, 0, 79, 79]])]
    rois = torch.tensor([[0.0, 1, 2, 30, 40], [1, 5, 5, 60, 70], [1, 0, 0, 79, 79]])
    ref = torchvision.ops.roi_pool(x, rois, 3, 0.25)
    assert torch.equal(roi_pool(x, boxes, 3, 0.25), ref)
    assert torch.equal(RoIPool(3, 0.25)(x, rois), ref)
    assert repr(RoIPool(3, 0.25)) == repr(torchvision.ops.RoIPool(3, 0.25))


def test_gradgradcheck_double():
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)  # no ties: the max is locally linear
    rois = torch.tensor([[0.0, 0.3, 0.6, 7.2, 6.1], [0, 2, 2, 8, 8], [0, -5, -5, -1, -1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (3, 2), 1.0), (x,))
    assert torch.autograd.gradgradcheck(lambda t: roi_pool(t, rois, (3, 2), 1.0), (x,))


def test_opcheck_and_compile():
    x = torch.randn(2, 3, 12, 12)
    rois = torch.tensor([[0.0, 1, 1, 30, 40], [1, 0, 0, 47, 47]])
    torch.library.opcheck(torch.ops.roi_lab.roi_pool.default, (x, rois, 0.25, 3, 3))
    compiled = torch.compile(lambda t: roi_pool(t, rois, 3, 0.25), fullgraph=True)
    assert torch.equal(compiled(x), roi_pool(x, rois, 3, 0.25))


def test_empty_inputs():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = roi_pool(x, torch.zeros(0, 5), 2)
    assert out.shape == (0, 3, 2, 2)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert roi_pool(torch.randn(1, 0, 5, 5), torch.tensor([[0.0, 0, 0, 4, 4]]), 2).shape == (1, 0, 2, 2)


def test_errors_say_what_to_do():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ShapeError) as err:
        roi_pool(x, torch.zeros(3, 4), 2)
    assert str(err.value) == (
        "roi_pool(boxes=...) expects boxes as Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list of "
        "Tensor[L, 4]; got Tensor[3, 4] float32 on cpu.\nFix: add the batch-index column, e.g. "
        "torch.cat([torch.zeros(3, 1), boxes], 1), or pass [boxes]"
    )
    with pytest.raises(InputValueError, match=r"roi_pool\(boxes=\.\.\.\) expects batch indices in column 0"):
        roi_pool(x, torch.tensor([[1.0, 0, 0, 4, 4]]), 2)
    with pytest.raises(InputValueError, match=r"roi_pool\(boxes=\.\.\.\) expects finite coordinates"):
        roi_pool(x, torch.tensor([[0.0, float("nan"), 0, 4, 4]]), 2)
    with pytest.raises(InputValueError, match=r"roi_pool\(spatial_scale=\.\.\.\) expects a finite positive float"):
        roi_pool(x, torch.tensor([[0.0, 0, 0, 4, 4]]), 2, spatial_scale=0)
    with pytest.raises(DTypeError, match=r"roi_pool\(input=\.\.\.\) expects a floating feature map"):
        roi_pool(x.int(), torch.tensor([[0.0, 0, 0, 4, 4]]), 2)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(2)
    x, rois, pooled, scale = random_case(gen, torch.float32, True)
    ref = roi_pool(x, rois, pooled, scale)
    out = roi_pool(x.cuda(), rois.cuda(), pooled, scale)
    assert torch.equal(out.cpu(), ref)
    assert torch.equal(out.cpu(), torchvision.ops.roi_pool(x.cuda(), rois.cuda(), pooled, scale).cpu())


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_nan_in_the_map_is_never_the_max_like_torchvision(layout):
    """torchvision compares each cell with '>' against a running max from -FLT_MAX: a NaN cell is never
    picked, a bin of NaN only gives -FLT_MAX. Both gather paths (NCHW planes, channels-last cells)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 11, generator=gen)
    x[0, :, 2:5, 3:6] = float("nan")
    x[1, 1, :, :4] = float("nan")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = torch.tensor([[0.0, 3, 2, 5, 4], [0, 1, 1, 8, 7], [1, 0, 0, 10, 8], [1, 0, 0, 3, 3]])
    out = roi_pool(x, rois, (2, 3), 1.0)
    expected = torchvision.ops.roi_pool(x, rois, (2, 3), 1.0)
    assert not out.isnan().any() and (out == -torch.finfo(torch.float32).max).any()  # a bin of NaN only
    assert torch.equal(out, expected)
