"""roi_lab's ops as drop-ins for torchvision's: the registered ``torch.library`` ops (opcheck, fake and
meta tensors), autograd (gradcheck, second derivatives), ``torch.compile(fullgraph=True)``,
``torch.export``, TorchScript and torch.fx.

The scenarios follow torchvision's test/test_ops.py (RoIOpTester, TestRoIAlign, TestMultiScaleRoIAlign:
forward on contiguous and permuted maps, gradcheck with sampling_ratio=1, scripted functions and
modules with box lists, fx leaves, opcheck), with torchvision's own ops as the oracle.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch.autograd import gradcheck, gradgradcheck
from torchvision.models.feature_extraction import get_graph_node_names

from roi_lab.errors import InputValueError, NotSupportedError, RoiLabError, ShapeError
from roi_lab.ops import _crop_and_resize_kernel
from roi_lab.ops.crop_and_resize import crop_and_resize
from roi_lab.ops.fpn import MultiScaleRoIAlign, assign_fpn_levels, multi_scale_roi_align
from roi_lab.ops.roi_align import RoIAlign, roi_align

tv_roi_align = torchvision.ops.roi_align
# torchvision's pure-PyTorch roi_align (what it runs without its compiled ops): plain autograd, so it
# has true second derivatives. ``__wrapped__`` skips its lazy torch.compile.
tv_roi_align_composite = importlib.import_module("torchvision.ops.roi_align")._roi_align.__wrapped__

# torchvision test_ops: 4 boxes on a 2-image 10 x 10 map, pooled 5 x 5 with adaptive sampling
ROIS = torch.tensor([[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]], dtype=torch.float64)
# torchvision test_backward: 3 boxes on a 5 x 5 map, pooled 2 x 2, sampling_ratio 1
BACKWARD_ROIS = torch.tensor([[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]], dtype=torch.float64)


def devices():
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def fpn_maps(gen, n=2, c=3, dtype=torch.float32, device="cpu"):
    """An FPN-like dict for a 256 x 320 image: strides 4, 8, 16."""
    return OrderedDict(
        (str(i), torch.randn(n, c, 64 // 2**i, 80 // 2**i, generator=gen, dtype=dtype).to(device)) for i in range(3)
    )


def fpn_boxes(gen, k, dtype=torch.float32, device="cpu"):
    """Boxes of 3..250 px spread over the three levels."""
    centre = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([320.0, 256.0], dtype=torch.float64)
    size = torch.exp(torch.rand(k, 2, generator=gen, dtype=torch.float64) * 4.4) + 2
    return torch.cat([centre - size / 2, centre + size / 2], 1).to(dtype).to(device)


# --------------------------------------------------------------------------------------------------
# torchvision's forward / backward scenarios


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("aligned", [False, True])
def test_forward_like_torchvision_test_ops(device, contiguous, dtype, aligned):
    x = torch.rand(2, 50, 10, 10, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = ROIS.to(device, dtype)
    y = RoIAlign((5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned)(x, rois)
    assert y.dtype == x.dtype
    oracle = torch.float32 if dtype == torch.float16 else dtype  # torchvision in float32 on the half values
    expected = tv_roi_align(x.to(oracle), rois.to(oracle), 5, 1.0, -1, aligned)
    tol = 4e-3 if dtype == torch.float16 else 1e-5  # torchvision's own tolerances
    torch.testing.assert_close(y.to(oracle), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_gradcheck_like_torchvision_test_ops(device, contiguous, seed):
    x = torch.rand(1, 8, 5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    x.requires_grad_()
    rois = BACKWARD_ROIS.to(device)
    assert gradcheck(lambda z: roi_align(z, rois, 2, 1.0, 1), (x,), atol=1e-5)
    scripted = torch.jit.script(roi_align)
    assert gradcheck(lambda z: scripted(z, rois, [2, 2], 1.0, 1), (x,), atol=1e-5)


def test_shape_errors_are_assertion_errors_like_torchvision():
    """torchvision's _helper_boxes_shape: wrong box shapes raise AssertionError (torch._assert); ours
    are ShapeErrors, which are AssertionErrors (and ValueErrors) too, with expected / got / fix."""
    a = torch.linspace(1, 8 * 8, 8 * 8).reshape(1, 1, 8, 8)
    with pytest.raises(AssertionError) as info:
        roi_align(a, torch.tensor([[0, 0, 3, 3]], dtype=a.dtype), output_size=(2, 2))
    assert isinstance(info.value, ShapeError) and isinstance(info.value, ValueError)
    assert info.value.expected.startswith("boxes as Tensor[K, 5]") and info.value.fix
    with pytest.raises(AssertionError, match=r"a list with one Tensor\[L, 4\]"):
        roi_align(a, [torch.tensor([[0, 0, 3]], dtype=a.dtype)], output_size=(2, 2))
    with pytest.raises(AssertionError, match=r"boxes as Tensor\[K, 4\] normalized"):
        crop_and_resize(a, torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), 2)


# --------------------------------------------------------------------------------------------------
# the registered ops: torch.library.opcheck (schema, autograd registration, fake tensors, AOT dispatch)


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_opcheck_roi_align(device, mode, aligned, layout):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 11, generator=gen).to(device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    rois = torch.tensor([[0, 1.0, 2, 7, 8], [1, 0, 0, 11, 9], [0, -3, -2, 4, 20]], device=device)
    _opcheck(torch.ops.roi_lab.roi_align.default, (x.requires_grad_(), rois, 0.5, 3, 2, -1, aligned, mode))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_opcheck_crop_and_resize(device, method, layout):
    gen = torch.Generator().manual_seed(2)
    image = torch.randn(2, 3, 6, 7, generator=gen).to(device)
    if layout == "channels_last":
        image = image.to(memory_format=torch.channels_last)
    boxes = torch.tensor([[0.1, 0.2, 0.9, 0.7], [-0.3, 1.2, 0.6, 0.1]], device=device)
    box_indices = torch.tensor([1, 0], device=device)
    args = (image.requires_grad_(), boxes.requires_grad_(method == "bilinear"), box_indices, 3, 4, method, 0.5)
    _opcheck(torch.ops.roi_lab.crop_and_resize.default, args)


@pytest.mark.parametrize("device", devices())
def test_opcheck_multi_scale_roi_align(device):
    gen = torch.Generator().manual_seed(3)
    maps = [m.requires_grad_() for m in fpn_maps(gen, device=device).values()]
    boxes = fpn_boxes(gen, 9, device=device)
    rois = torch.cat([torch.tensor([0.0] * 5 + [1.0] * 4, device=device)[:, None], boxes], 1)
    _opcheck(torch.ops.roi_lab.multi_scale_roi_align.default, (maps, rois, [0.25, 0.125, 0.0625], 3, 3, 2, False,
                                                               224.0, 4))  # fmt: skip


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_meta_and_fake_tensors_give_shapes_without_data(device):
    """torchvision registers meta kernels; so does torch.library for our ops (their fake impls)."""
    x = torch.zeros(2, 4, 8, 8, device=device)
    out = roi_align(x, torch.zeros(3, 5, device=device), (2, 3))
    assert out.device.type == device and out.shape == (3, 4, 2, 3)
    out = roi_align(x, [torch.zeros(2, 4, device=device), torch.zeros(1, 4, device=device)], 2)
    assert out.shape == (3, 4, 2, 2)
    crops = crop_and_resize(x, torch.zeros(5, 4, device=device), torch.zeros(5, dtype=torch.long, device=device), 3)
    assert crops.shape == (5, 4, 3, 3)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = roi_align(torch.empty(2, 4, 8, 8), torch.empty(6, 5), 7, 1 / 16, 2, True)
    assert fake.shape == (6, 4, 7, 7)


# --------------------------------------------------------------------------------------------------
# second derivatives


@pytest.mark.parametrize("aligned, ratio", [(True, 2), (False, -1), (True, 0)])
def test_roi_align_second_derivative_passes_gradgradcheck(aligned, ratio):
    """roi_lab's backward used to be once_differentiable without saying so: gradgradcheck failed
    (Jacobian mismatch). Now avg pooling's backward is itself differentiable."""
    x = torch.rand(2, 2, 6, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 1.0, 5.0, 4.5], [1, -2.0, -1.0, 3.0, 9.0], [1, 2.0, 2.0, 4.5, 5.2]],
                        dtype=torch.float64)  # fmt: skip
    assert gradgradcheck(lambda t: roi_align(t, rois, (2, 3), 1.0, ratio, aligned), (x,), fast_mode=True)


def test_roi_align_hessian_vector_product_matches_torchvision_composite():
    """A gradient penalty through roi_align: before, autograd.grad(..., allow_unused=True) returned None
    here although the true value is not zero. Oracle: torchvision's pure-PyTorch roi_align."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, 9, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3, 8, 9, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 0.5, 1.0, 6.0, 7.5], [1, 2.0, 0.0, 8.5, 4.2], [0, 3.0, 3.0, 4.0, 5.0]],
                        dtype=torch.float64)  # fmt: skip

    def hvp(pool):
        leaf = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(pool(leaf).tanh().sum(), leaf, create_graph=True)
        (second,) = torch.autograd.grad((grad * v).sum(), leaf, allow_unused=True)
        return second

    ours = hvp(lambda t: roi_align(t, rois, 3, 0.5, 2, True))
    theirs = hvp(lambda t: tv_roi_align_composite(t, rois, 0.5, 3, 3, 2, True))
    assert ours is not None and float(theirs.abs().max()) > 1e-3  # a real, non-zero oracle
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_roi_align_max_mode_refuses_second_derivatives():
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    out = roi_align(x, torch.tensor([[0, 0.5, 0.5, 5.0, 5.0]], dtype=torch.float64), 2, 1.0, 2, True, mode="max")
    (grad,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)  # the first derivative works
    with pytest.raises(NotSupportedError) as info:
        torch.autograd.grad(grad.sum(), x)
    assert isinstance(info.value, RuntimeError)  # as torchvision's "double backwards on roi_align not supported"
    assert "roi_align(mode='max') backward expects a first derivative only" in str(info.value)
    assert 'use mode="avg", whose second derivative is supported' in info.value.fix


def test_crop_and_resize_second_derivatives_equal_plain_autograd():
    """The registered double backward (a vjp of the vjp inside the op) equals plain autograd run over
    the same kernel outside any op, for image and boxes."""
    gen = torch.Generator().manual_seed(6)
    image = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
    boxes = torch.tensor([[0.13, 0.21, 0.81, 0.77], [0.33, 0.14, 0.62, 0.93], [-0.2, 0.1, 0.4, 1.3]])
    box_indices = torch.tensor([0, 1, 1])
    grad_out = torch.randn(3, 2, 3, 4, generator=gen, dtype=torch.float64)
    v_image = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
    v_boxes = torch.randn(3, 4, generator=gen)

    def second(crop):
        im, bx = image.clone().requires_grad_(), boxes.clone().requires_grad_()
        g_image, g_boxes = torch.autograd.grad(crop(im, bx), (im, bx), grad_out, create_graph=True)
        return torch.autograd.grad((g_image * v_image).sum() + (g_boxes * v_boxes).sum(), (im, bx))

    ours = second(lambda im, bx: crop_and_resize(im, bx, box_indices, (3, 4), extrapolation_value=0.5))
    plain = second(lambda im, bx: _crop_and_resize_kernel._kernel(im, bx, box_indices, 3, 4, "bilinear", 0.5))
    assert float(plain[0].abs().max()) > 0 and float(plain[1].abs().max()) > 0
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_crop_and_resize_refuses_third_derivatives():
    image = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    out = crop_and_resize(image, torch.tensor([[0.1, 0.1, 0.8, 0.9]]), torch.tensor([0]), 3)
    (g,) = torch.autograd.grad(out.square().sum(), image, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), image, create_graph=True)
    with pytest.raises(NotSupportedError, match="crop_and_resize backward expects first and second derivatives"):
        torch.autograd.grad(gg.sum(), image)


def test_multi_scale_second_derivative_passes_gradgradcheck():
    gen = torch.Generator().manual_seed(7)
    maps = tuple(torch.randn(1, 1, 8 // 2**i, 10 // 2**i, generator=gen, dtype=torch.float64, requires_grad=True)
                 for i in range(3))  # fmt: skip
    boxes = [torch.tensor([[1.0, 1, 6, 7], [1, 2, 9, 13], [3, 1, 30, 28]], dtype=torch.float64)]
    levels = assign_fpn_levels(boxes[0], k_min=2, k_max=4, canonical_scale=16, canonical_level=4)
    assert levels.tolist() == [2, 3, 4]  # one box per level (scales 1/4, 1/8, 1/16 for a 32 x 40 image)

    def pool(*m):
        return multi_scale_roi_align(list(m), boxes, [(32, 40)], 2, canonical_scale=16, canonical_level=4)

    assert gradcheck(pool, maps, fast_mode=True) and gradgradcheck(pool, maps, fast_mode=True)


# --------------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True) and torch.export: no graph break, the data checks still raise


@pytest.mark.slow
@pytest.mark.parametrize("device", devices())
def test_compile_fullgraph_roi_align_forward_backward_and_checks(device):
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, 12, 15, generator=gen).to(device)
    rois = torch.tensor([[0, 1.0, 2, 9, 11], [1, 0, 0, 15, 12], [0, 3, 3, 4, 8]], device=device)

    def head(features, boxes):
        return roi_align(features * 2, boxes, 3, 0.5, 2, True).relu().sum((2, 3))

    compiled = torch.compile(head, fullgraph=True, dynamic=False)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = compiled(x1, rois), head(x2, rois)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    bad = rois.clone()
    bad[1, 3] = float("nan")
    with pytest.raises(InputValueError, match="finite coordinates; got 1 NaN/inf values, the first in row 1"):
        compiled(x, bad)  # the data check runs inside the op, at run time
    bad_index = rois.clone()
    bad_index[2, 0] = 2
    with pytest.raises(InputValueError, match=r"batch indices in column 0 that are integers in \[0, 1\]"):
        compiled(x, bad_index)


@pytest.mark.slow
def test_compile_fullgraph_list_boxes_crop_and_resize_and_multi_scale():
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(9)
    maps = fpn_maps(gen)
    pooler = MultiScaleRoIAlign(["0", "1", "2"], 3, 2)
    reference = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2"], 3, 2)

    def model(features, boxes):
        pooled = pooler(features, boxes, [(256, 320)] * 2)  # [K, C, 3, 3]
        listed = roi_align(features["1"], boxes, (2, 2), 1 / 8, 2, True)  # [K, C, 2, 2]
        norm = torch.cat(boxes)[:, [1, 0, 3, 2]] / torch.tensor([256.0, 320.0, 256.0, 320.0])
        index = torch.cat([torch.full((b.shape[0],), i) for i, b in enumerate(boxes)])
        crops = crop_and_resize(features["0"], norm, index, 3)  # [K, C, 3, 3]
        return pooled, listed, crops

    compiled = torch.compile(model, fullgraph=True)
    for k0, k1 in ((7, 4), (3, 5), (9, 1)):  # new box counts: recompiled with a symbolic K (automatic dynamic)
        boxes = [fpn_boxes(gen, k0), fpn_boxes(gen, k1)]
        got = compiled(maps, boxes)
        for a, b in zip(got, model(maps, boxes), strict=True):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(got[0], reference(maps, boxes, [(256, 320)] * 2))
        torch.testing.assert_close(got[1], tv_roi_align(maps["1"], boxes, (2, 2), 1 / 8, 2, True))


@pytest.mark.slow
def test_compile_fullgraph_dynamic_shapes():
    """dynamic=True: every size symbolic, maps included (the scales are given: see infer_scales)."""
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(14)

    def model(features, boxes, norm, index):
        pooled = multi_scale_roi_align(features, boxes, [(256, 320)], 3, scales=[0.25, 0.125, 0.0625])
        return pooled, roi_align(features[1], boxes, 2, 1 / 8, 0, True), crop_and_resize(features[0], norm, index, 2)

    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for k, c in ((5, 3), (8, 2)):
        maps = list(fpn_maps(gen, n=1, c=c).values())
        boxes = [fpn_boxes(gen, k)]
        norm, index = torch.rand(k, 4, generator=gen), torch.zeros(k, dtype=torch.long)
        for a, b in zip(compiled(maps, boxes, norm, index), model(maps, boxes, norm, index), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", devices())
def test_export_keeps_the_ops_whole_and_runs(device):
    gen = torch.Generator().manual_seed(10)
    maps = fpn_maps(gen, device=device)
    boxes = [fpn_boxes(gen, 5, device=device), fpn_boxes(gen, 3, device=device)]

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pooler = MultiScaleRoIAlign(["0", "1", "2"], 3, 2)

        def forward(self, p2, p3, p4, b0, b1, norm, index):
            maps = OrderedDict([("0", p2), ("1", p3), ("2", p4)])
            return (
                self.pooler(maps, [b0, b1], [(256, 320), (256, 320)]),
                roi_align(p3, [b0, b1], 2, 1 / 8, -1, True),
                crop_and_resize(p2, norm, index, (3, 2)),
            )

    norm = torch.tensor([[0.1, 0.2, 0.9, 0.7], [0.0, 0.0, 1.0, 1.0]], device=device)
    index = torch.tensor([1, 0], device=device)
    args = (*maps.values(), *boxes, norm, index)
    program = torch.export.export(Heads(), args)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"roi_lab.multi_scale_roi_align.default", "roi_lab.roi_align.default",
            "roi_lab.crop_and_resize.default"} <= targets  # fmt: skip
    for a, b in zip(program.module()(*args), Heads()(*args), strict=True):
        torch.testing.assert_close(a, b)


def test_export_with_a_dynamic_number_of_boxes():
    x = torch.randn(1, 2, 8, 8)

    class Pool(torch.nn.Module):
        def forward(self, x, rois):
            return roi_align(x, rois, 2, 1.0, 2, True)

    k = torch.export.Dim("k")
    program = torch.export.export(Pool(), (x, torch.rand(4, 5) * 4), dynamic_shapes=({}, {0: k}))
    rois = torch.tensor([[0, 1.0, 1, 5, 6], [0, 0, 0, 8, 8], [0, 2, 3, 4, 4], [0, 1, 1, 2, 2], [0, 0, 0, 1, 1]])
    torch.testing.assert_close(program.module()(x, rois), tv_roi_align(x, rois, 2, 1.0, 2, True))
    with pytest.raises(InputValueError, match="finite coordinates"):
        program.module()(x, torch.full((2, 5), float("nan")))


# --------------------------------------------------------------------------------------------------
# TorchScript


def test_script_roi_align_function_and_module_with_box_lists():
    """torchvision's _helper_jit_boxes_list: a scripted pooler over List[Tensor] boxes."""

    class PoolWrapper(torch.nn.Module):
        def __init__(self, pool):
            super().__init__()
            self.pool = pool

        def forward(self, imgs: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
            return self.pool(imgs, boxes)

    x = torch.rand(2, 1, 10, 10)
    roi = torch.tensor([[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]], dtype=torch.float).t()
    scripted = torch.jit.script(PoolWrapper(RoIAlign(output_size=[3, 3], spatial_scale=1.0, sampling_ratio=-1)))
    y = scripted(x, [roi, roi])
    assert y.shape == (10, 1, 3, 3)
    torch.testing.assert_close(y, tv_roi_align(x, [roi, roi], [3, 3], 1.0, -1))
    function = torch.jit.script(roi_align)
    torch.testing.assert_close(function(x, ROIS.float(), [5, 5], 0.5, 2, True), tv_roi_align(x, ROIS.float(), 5,
                                                                                             0.5, 2, True))  # fmt: skip
    torch.testing.assert_close(function(x, [roi], 2, 1.0, 0, False, "max"), roi_align(x, [roi], 2, 1.0, 0, mode="max"))


def test_scripted_calls_keep_the_clear_errors():
    """The op checks its own inputs, so scripted calls get the same messages; the TorchScript
    interpreter wraps every exception raised inside an op in its RuntimeError."""
    function = torch.jit.script(roi_align)
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(RuntimeError, match=r"ShapeError: roi_align\(boxes=...\) expects boxes as Tensor\[K, 5\]"):
        function(x, torch.zeros(3, 4), [2, 2])
    with pytest.raises(RuntimeError, match="InputValueError: roi_align\\(boxes=...\\) expects finite coordinates"):
        function(x, torch.tensor([[0.0, 1, 1, float("inf"), 3]]), [2, 2])


def test_scripted_module_saves_and_loads(tmp_path):
    scripted = torch.jit.script(RoIAlign((2, 2), 0.5, 2, True))
    torch.jit.save(scripted, tmp_path / "pool.pt")
    loaded = torch.jit.load(tmp_path / "pool.pt")
    x = torch.randn(1, 3, 9, 9)
    rois = torch.tensor([[0, 1.0, 1, 12, 14]])
    torch.testing.assert_close(loaded(x, rois), tv_roi_align(x, rois, 2, 0.5, 2, True))


def test_script_multi_scale_roi_align_matches_torchvision():
    gen = torch.Generator().manual_seed(11)
    maps = fpn_maps(gen)
    boxes = [fpn_boxes(gen, 9), fpn_boxes(gen, 4)]
    scripted = torch.jit.script(MultiScaleRoIAlign(["0", "1", "2"], 3, 2))
    reference = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2"], 3, 2)
    torch.testing.assert_close(scripted(maps, boxes, [(256, 320)] * 2), reference(maps, boxes, [(256, 320)] * 2))
    single = torch.jit.script(MultiScaleRoIAlign(["1"], (2, 3), -1))
    torch.testing.assert_close(
        single(maps, boxes, [(256, 320)] * 2),
        torchvision.ops.MultiScaleRoIAlign(["1"], (2, 3), -1)(maps, boxes, [(256, 320)] * 2),
    )


# --------------------------------------------------------------------------------------------------
# torch.fx: leaves


class _Wrapper2(torch.nn.Module):
    """torchvision's RoIOpTesterModuleWrapper."""

    n_inputs = 2

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, a, b):
        return self.layer(a, b)


class _Wrapper3(_Wrapper2):
    """torchvision's MultiScaleRoIAlignModuleWrapper."""

    n_inputs = 3

    def forward(self, a, b, c):
        return self.layer(a, b, c)


class _CropModule(torch.nn.Module):
    def forward(self, image, boxes, box_indices):
        return crop_and_resize(image, boxes, box_indices, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _Wrapper2(RoIAlign((5, 5), 1.0, -1)),
        lambda: _Wrapper3(MultiScaleRoIAlign(["0"], (7, 7), 2)),
        lambda: _Wrapper3(_CropModule()),
    ],
    ids=["RoIAlign", "MultiScaleRoIAlign", "crop_and_resize"],
)
def test_is_leaf_node(make):
    """torchvision's test_is_leaf_node: get_graph_node_names sees the op as one node."""
    wrapper = make()
    train, evaluation = get_graph_node_names(wrapper)
    assert train == evaluation and len(train) == 1 + wrapper.n_inputs


def test_torch_fx_trace_records_roi_align_as_one_call():
    """torchvision's test_torch_fx_trace: the traced module computes the same, with roi_align a leaf
    (before, tracing failed with 'Proxy object cannot be iterated')."""
    module = RoIAlign((5, 5), spatial_scale=1, sampling_ratio=-1)
    graph_module = torch.fx.symbolic_trace(module)
    calls = [n for n in graph_module.graph.nodes if n.op == "call_function"]
    assert [n.target for n in calls] == [roi_align]
    x = torch.rand(2, 50, 5, 5)
    rois = ROIS.float()
    torch.testing.assert_close(graph_module(x, rois), module(x, rois), rtol=1e-5, atol=1e-5)
    pooler = MultiScaleRoIAlign(["0", "1", "2"], 3, 2)
    traced = torch.fx.symbolic_trace(pooler)
    assert [n.target for n in traced.graph.nodes if n.op == "call_function"] == [multi_scale_roi_align]
    gen = torch.Generator().manual_seed(12)
    maps, boxes = fpn_maps(gen), [fpn_boxes(gen, 6), fpn_boxes(gen, 2)]
    torch.testing.assert_close(traced(maps, boxes, [(256, 320)] * 2), pooler(maps, boxes, [(256, 320)] * 2))


# --------------------------------------------------------------------------------------------------
# CUDA: autocast, like torchvision's test_autocast


@pytest.mark.cuda
@pytest.mark.parametrize("x_dtype", [torch.float, torch.half], ids=str)
@pytest.mark.parametrize("rois_dtype", [torch.float, torch.half], ids=str)
@pytest.mark.parametrize("aligned", [False, True])
def test_cuda_autocast(x_dtype, rois_dtype, aligned):
    x = torch.rand(2, 50, 10, 10, generator=torch.Generator().manual_seed(13)).to("cuda", x_dtype).permute(0, 1, 3, 2)
    rois = ROIS.to("cuda", rois_dtype)
    with torch.autocast("cuda"):
        y = roi_align(x, rois, 5, 1.0, -1, aligned)
    assert y.dtype == x.dtype
    expected = tv_roi_align(x.float(), rois.float(), 5, 1.0, -1, aligned)
    tol = 5e-3 if torch.half in (x_dtype, rois_dtype) else 1e-5
    torch.testing.assert_close(y.float(), expected, rtol=tol, atol=tol)


def test_errors_from_inside_the_op_keep_their_class_and_fields():
    """A data check raised inside the registered op's implementation reaches the caller unchanged."""
    with pytest.raises(InputValueError) as info:
        torch.ops.roi_lab.roi_align(torch.zeros(1, 1, 4, 4), torch.tensor([[3.0, 0, 0, 1, 1]]), 1.0, 2, 2, -1, False,
                                    "avg")  # fmt: skip
    assert isinstance(info.value, RoiLabError)
    assert info.value.expected == "batch indices in column 0 that are integers in [0, 0] (input has N=1)"
