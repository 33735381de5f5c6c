"""Batch invariance of roi_align: a box's crop does not depend on the other boxes of the call.

roi_align's kernel pools every output from its own box's bilinear taps alone, in a fixed order (two
``torch.embedding_bag`` stages whose bags hold one box's entries each): what else is pooled changes
which bags sit next to each other, never the entries of a bag nor their order. So a box's crop is
bit-identical alone and between 150 other boxes, for every dtype, mode and thread count (exact by
construction; the float16 / bfloat16 maps are pooled in float32 per entry the same way). The earlier
matmul kernel was only within a few ulp (its BLAS batch shapes depended on the companions); the bound
``4 * eps(dtype) * max|input|`` is kept for the list-form test, whose boxes also change order.
torchvision's compiled kernel loops over boxes and is exactly batch-invariant, which the last test
checks so that the comparison baseline stays honest.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from roi_lab import roi_align

ULPS = 4


def _random_rois(gen: torch.Generator, k: int, n: int, h: int, w: int, max_log_size: float) -> torch.Tensor:
    """[K, 5] rois: corners spread over (and a little past) the map, sizes log-uniform in [1, e^max_log_size]."""
    extent = torch.tensor([w, h], dtype=torch.float64)
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * extent * 1.2 - 0.1 * extent
    wh = torch.exp(torch.rand(k, 2, generator=gen, dtype=torch.float64) * max_log_size)
    index = torch.randint(0, n, (k, 1), generator=gen).double()
    return torch.cat([index, xy, xy + wh], 1)


def _alone_and_mixed(x: torch.Tensor, target: torch.Tensor, others: torch.Tensor, op, **kwargs):
    """The target boxes' crops pooled on their own, and pooled between many other boxes."""
    half = len(others) // 2
    alone = op(x, target.to(x.dtype), **kwargs)
    mixed = op(x, torch.cat([others[:half], target, others[half:]]).to(x.dtype), **kwargs)
    return alone, mixed[half : half + len(target)]


def _bound(x: torch.Tensor) -> float:
    return ULPS * torch.finfo(x.dtype).eps * float(x.abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("output_size", [7, 56])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_crop_does_not_depend_on_other_boxes(dtype, aligned, sampling_ratio, output_size, mode):
    gen = torch.Generator().manual_seed(output_size * 10 + sampling_ratio)
    n, c, h, w = 2, 6, 75, 100
    x = torch.randn(n, c, h, w, generator=gen).to(dtype)
    target = _random_rois(gen, 6, n, h, w, max_log_size=5.0)
    others = _random_rois(gen, 150, n, h, w, max_log_size=6.5)  # small to larger than the map
    kwargs = dict(output_size=output_size, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=aligned)
    alone, mixed = _alone_and_mixed(x, target, others, roi_align, mode=mode, **kwargs)
    assert alone.abs().max() > 0  # the boxes pool real values, not only zeros
    # exact by construction: each output is one box's bags, summed in the same order (module docstring)
    assert torch.equal(alone, mixed), float((alone.double() - mixed.double()).abs().max())


def test_list_form_and_rois_form_agree_within_the_bound():
    """[Tensor[L, 4]] per image and the equivalent Tensor[K, 5] pool the same boxes (the same bound)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 40, 52, generator=gen)
    rois = _random_rois(gen, 40, 2, 40, 52, max_log_size=4.0).float()
    as_list = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([(rois[:, 0] == i).nonzero()[:, 0] for i in range(2)])
    from_list = roi_align(x, as_list, 7, 1.0, 2, True)
    from_rois = roi_align(x, rois, 7, 1.0, 2, True)[order]
    assert (from_list - from_rois).abs().max() <= _bound(x)


def test_torchvision_baseline_is_exactly_batch_invariant():
    """The reference the docstring compares against: torchvision's kernel loops over boxes, so a box's
    crop is bit-identical whatever else is pooled (exact by construction: one box, one loop)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 60, 80, generator=gen)
    target = _random_rois(gen, 5, 2, 60, 80, max_log_size=5.0)
    others = _random_rois(gen, 100, 2, 60, 80, max_log_size=6.5)
    alone, mixed = _alone_and_mixed(x, target, others, torchvision.ops.roi_align, output_size=14,
                                    spatial_scale=1.0, sampling_ratio=2, aligned=True)
    assert torch.equal(alone, mixed)
