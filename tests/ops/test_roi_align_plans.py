"""roi_align's kernel has one planner written against two array libraries and two row layouts; all four
give the same bits.

A CPU forward plans with numpy (a numpy call on a small array costs ~1 us against ~5-10 us for a torch
op: the fixed cost of a small call), CUDA and every backward with torch. A chunk that fits one
cache-sized sub-chunk gets its stage-1 rows as a dense padded grid, a larger one as ragged lists. Every
bag that is read holds the same entries in the same order whichever plan made it, and both libraries
compute each float with the same IEEE operation on the same dtype, so the crops are exactly equal (by
construction, not within a tolerance). These tests force each combination on the same inputs.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from roi_lab.ops import _roi_align_kernel as kernel


def _inputs(seed: int, dtype: torch.dtype, k: int, size_range: float):
    """A map [2, 5, 40, 56] and K boxes over (and a little past) it, sizes log-uniform up to e^size_range."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = 2, 5, 40, 56
    x = torch.randn(n, c, h, w, generator=gen).to(dtype)
    extent = torch.tensor([w, h], dtype=torch.float64)
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * extent * 1.3 - 0.15 * extent
    wh = torch.exp(torch.rand(k, 2, generator=gen, dtype=torch.float64) * size_range)
    boxes = torch.cat([xy, xy + wh], 1).to(dtype)
    batch = torch.randint(0, n, (k,), generator=gen)
    return x, batch, boxes


def _pool(x, batch, boxes, ops, bucket: int, monkeypatch, **options):
    """The forward with the given array library and sub-chunk budget (a tiny budget: ragged rows in many
    sub-chunks; a huge one: one padded sub-chunk)."""
    monkeypatch.setattr(kernel, "_BUCKET_ELEMENTS", bucket)
    plan = kernel._Plan(x.shape, x.dtype, x.device, batch, boxes, options["pooled"], options["scale"],
                        options["sampling_ratio"], options["aligned"], options["mode"], ops)  # fmt: skip
    return kernel._forward(x, plan), plan


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("size_range", [2.0, 5.5])  # boxes of a few px, and boxes wider than the map (taps mode)
def test_numpy_and_torch_plans_padded_and_ragged_give_the_same_bits(
    dtype, mode, sampling_ratio, aligned, size_range, monkeypatch
):
    x, batch, boxes = _inputs(int(size_range * 10) + sampling_ratio, dtype, 12, size_range)
    options = dict(pooled=(5, 4), scale=0.75, sampling_ratio=sampling_ratio, aligned=aligned, mode=mode)
    results = {}
    for library, ops in (("numpy", kernel._NumpyOps()), ("torch", kernel._TorchOps(x.device))):
        for layout, bucket in (("padded", 1 << 30), ("ragged", 64)):
            out, plan = _pool(x, batch, boxes, ops, bucket, monkeypatch, **options)
            assert [ch.layout for ch in plan.chunks] == [layout]  # the plan really is the one named
            assert len(plan.chunks[0].subs) == 1 if layout == "padded" else len(plan.chunks[0].subs) > 1
            results[library, layout] = out
    reference = results["torch", "ragged"]  # the plan every call took before the numpy planner
    assert reference.abs().max() > 0
    for key, out in results.items():
        assert torch.equal(out, reference), key  # exact by construction (module docstring)


def test_every_sample_off_the_map_and_boxes_with_no_column(monkeypatch):
    """Boxes wholly off the map (no tapped column: the padded rows must not index past the map) next to
    boxes on it, in both plans; and the crops match torchvision's compiled kernel within float64 rounding."""
    x = torch.randn(1, 3, 10, 12, dtype=torch.float64)
    boxes = torch.tensor(
        [[-50.0, -50, -30, -30], [30, 2, 60, 8], [2, 30, 8, 60], [1, 1, 9, 7], [-3, -2, 15, 13]], dtype=torch.float64
    )
    batch = torch.zeros(5, dtype=torch.long)
    options = dict(pooled=(3, 3), scale=1.0, sampling_ratio=2, aligned=True, mode="avg")
    padded, plan = _pool(x, batch, boxes, kernel._NumpyOps(), 1 << 30, monkeypatch, **options)
    ragged, other = _pool(x, batch, boxes, kernel._TorchOps(x.device), 16, monkeypatch, **options)
    assert [ch.layout for ch in plan.chunks + other.chunks] == ["padded", "ragged"]
    assert torch.equal(padded, ragged)
    assert torch.equal(padded[:3], torch.zeros_like(padded[:3]))  # no sample on the map: 0, as torchvision
    expected = torchvision.ops.roi_align(x, torch.cat([batch[:, None].double(), boxes], 1), 3, 1.0, 2, True)
    torch.testing.assert_close(padded, expected, rtol=0, atol=1e-12)


def test_the_cpu_forward_plans_with_numpy_and_the_backward_with_torch(monkeypatch):
    """Which library each pass plans with (the fixed cost of a CPU forward is the numpy planner's)."""
    seen = []
    real = kernel._Plan.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append(type(self.ops).__name__)

    monkeypatch.setattr(kernel._Plan, "__init__", spy)
    from roi_lab import roi_align

    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    roi_align(x, torch.tensor([[0.0, 1, 1, 6, 6]]), 2, 1.0, 2, True).sum().backward()
    assert seen == ["_NumpyOps", "_TorchOps"]
