"""Backbones: stage shapes and strides, weights (fallback, checkpoints, cache), input forms, summaries.

Oracles: torchvision's own models run through torchvision's feature extractor on the same state
dict, conv/pool output-size arithmetic written out layer by layer here, the issue's published
1000 x 800 -> C4 63 x 50, and numpy's SVD for the PCA view. CPU, random weights, small images.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import socket
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.feature_extraction import create_feature_extractor

import roi_lab.backbone as backbone_module
from roi_lab.backbone import BACKBONES, NonFiniteWeightsWarning, feature_summary, load_backbone, pick_channel
from roi_lab.errors import InputValueError, ShapeError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine, two threads spin against other processes and
    make these tiny forward passes 10-50x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs with the network cut: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.delenv("ROI_LAB_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def backbones():
    cache: dict[str, backbone_module.Backbone] = {}

    def get(name):
        if name not in cache:
            cache[name] = load_backbone(name, weights="none", device="cpu")
        return cache[name]

    return get


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _normalised(img):
    return (torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255 - MEAN) / STD


# --------------------------------------------------------------------------- sizes from conv arithmetic
def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _resnet_size(n, stride):
    """conv1 (k7 s2 p3), maxpool (k3 s2 p1), then a 3x3 s2 p1 conv per extra stage."""
    n = _out(_out(n, 7, 2, 3), 3, 2, 1)  # C2, stride 4
    for _ in range(int(math.log2(stride)) - 2):
        n = _out(n, 3, 2, 1)
    return n


def _expected_size(name, stage, n):
    if name == "vgg16":  # 2x2 s2 max-pools before conv3 (2), conv4 (3), conv5 (4)
        pools = {"conv3_3": 2, "conv4_3": 3, "conv5_3": 4}[stage]
        for _ in range(pools):
            n = _out(n, 2, 2, 0)
        return n
    if stage == "P6":  # torchvision LastLevelMaxPool: max_pool2d(P5, kernel 1, stride 2, padding 0)
        return _out(_resnet_size(n, 32), 1, 2, 0)
    return _resnet_size(n, int(stage[1:]) and {2: 4, 3: 8, 4: 16, 5: 32}[int(stage[1:])])


# (H, W): 90 x 70 is divisible by neither 16 nor 32; 64 x 96 by 32 (not by 64, so P6 still rounds up).
SIZES = [(90, 70), (64, 96)]
CASES = [(name, hw) for name in BACKBONES for hw in SIZES]


@pytest.mark.parametrize("name, hw", CASES, ids=[f"{n}-{h}x{w}" for n, (h, w) in CASES])
def test_stage_shapes_and_strides(backbones, name, hw):
    bb = backbones(name)
    feats = bb.features(_image(*hw))
    assert tuple(feats) == bb.stages
    assert backbone_module.backbone_info(name)["channels"] == {s: t.shape[1] for s, t in feats.items()}
    eff = bb.effective_strides(hw, feats)
    for stage, t in feats.items():
        h, w = (_expected_size(name, stage, n) for n in hw)
        assert tuple(t.shape) == (1, bb.channels[stage], h, w), stage
        assert t.dtype == torch.float32 and t.device.type == "cpu"
        assert bb.feature_size(hw, stage) == (h, w)
        assert eff[stage] == (hw[0] / h, hw[1] / w)
    assert bb.last_forward_ms > 0


def test_published_example_1000x800_gives_c4_63x50(backbones):
    bb = backbones("resnet18")
    c4 = bb.features(_image(1000, 800), stages="C4")["C4"]
    assert tuple(c4.shape[-2:]) == (63, 50)
    assert bb.effective_strides((1000, 800), {"C4": c4.shape}) == {"C4": (1000 / 63, 16.0)}


def test_nominal_strides_and_stage_names():
    expected = {
        "resnet50": {"C2": 4, "C3": 8, "C4": 16, "C5": 32},
        "resnet50_fpn": {"C2": 4, "C3": 8, "C4": 16, "C5": 32, "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64},
        "vgg16": {"conv3_3": 4, "conv4_3": 8, "conv5_3": 16},
    }
    for name, strides in expected.items():
        bb = backbone_module.Backbone(name, torch.nn.Identity(), torch.device("cpu"), torch.float32, "", "random")
        assert bb.nominal_strides == strides
        assert bb.stages == tuple(strides)
        assert backbone_module.backbone_info(name)["nominal_strides"] == strides
    assert BACKBONES == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet50_fpn", "vgg16")


def test_only_the_needed_layers_run(backbones):
    bb = backbones("resnet18")
    calls = []
    hooks = [getattr(bb.model, f"layer{i}").register_forward_hook(lambda *a, i=i: calls.append(i)) for i in (3, 4)]
    try:
        img = _image(96, 64)
        c3 = bb.features(img, stages=["C3"])
        assert calls == [] and list(c3) == ["C3"]
        c4 = bb.features(img, stages=["C4"])
        assert calls == [3]
    finally:
        for h in hooks:
            h.remove()
    # exact by construction: the same layers on the same input tensor in one process (CPU conv kernels
    # are run-to-run deterministic for a fixed shape and thread count)
    torch.testing.assert_close(c4["C4"], bb.features(img)["C4"], rtol=0, atol=0)


def test_fpn_c_only_skips_the_fpn(backbones):
    bb = backbones("resnet50_fpn")
    calls = []
    hook = bb.model.fpn.register_forward_hook(lambda *a: calls.append(1))
    try:
        assert list(bb.features(_image(64, 64), stages=["C2", "C3"])) == ["C2", "C3"]
        assert calls == []
        assert list(bb.features(_image(64, 64), stages=["P3"])) == ["P3"]
        assert calls == [1]
    finally:
        hook.remove()


def test_input_forms_agree(backbones):
    bb = backbones("resnet18")
    img = _image(70, 90, seed=4)
    ref = bb.features(img, stages="C3")["C3"]
    t = torch.from_numpy(img)
    for form in (t, t.permute(2, 0, 1), t.permute(2, 0, 1)[None], t.permute(2, 0, 1)[None].float() / 255):
        torch.testing.assert_close(bb.features(form, stages="C3")["C3"], ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- weights
def _seeded_state_dict(module, seed=123):
    """Random values for every float entry (so BN statistics are non-trivial too)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for k, v in module.state_dict().items():
        out[k] = torch.randn(v.shape, generator=g) * 0.05 + (1.0 if k.endswith(("running_var", "bn1.weight")) else 0)
        if k.endswith("running_var"):
            out[k] = out[k].abs() + 0.5
        if not v.is_floating_point():
            out[k] = v.clone()
    return out


def test_checkpoint_round_trip_resnet18_matches_torchvision(tmp_path):
    ref = torchvision.models.resnet18()
    state = _seeded_state_dict(ref)
    ref.load_state_dict(state)
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    bb = load_backbone("resnet18", weights=str(path), device="cpu")
    assert bb.weights_kind == "checkpoint" and bb.weights_source == f"checkpoint {path}"
    img = _image(120, 100, seed=1)
    extractor = create_feature_extractor(ref.eval(), {"layer1": "C2", "layer2": "C3", "layer3": "C4", "layer4": "C5"})
    expected = extractor(_normalised(img))
    got = bb.features(img)
    for stage in ("C2", "C3", "C4", "C5"):
        torch.testing.assert_close(got[stage], expected[stage], rtol=1e-5, atol=1e-5)
    # and the random-init model is something else
    other = load_backbone("resnet18", weights="none", device="cpu").features(img, "C5")["C5"]
    assert (other - expected["C5"]).abs().max() > 1e-2


def test_checkpoint_wrapped_in_state_dict_key_or_dataparallel_prefix(tmp_path, backbones):
    ref = torchvision.models.resnet18()
    state = _seeded_state_dict(ref, seed=7)
    img = _image(64, 64)
    expected = load_backbone("resnet18", weights=state, device="cpu").features(img, "C4")["C4"]
    dataparallel = {f"module.{k}": v for k, v in state.items()}
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}  # a backbone-only export
    for i, wrapped in enumerate(({"state_dict": state, "epoch": 3}, {"model": dataparallel}, headless)):
        path = tmp_path / f"w{i}.pth"
        torch.save(wrapped, path)
        got = load_backbone("resnet18", weights=path, device="cpu").features(img, "C4")["C4"]
        # exact by construction: the same weights, bit for bit, run on the same input in one process
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_environment_variable_checkpoint(tmp_path, monkeypatch):
    state = _seeded_state_dict(torchvision.models.resnet18(), seed=9)
    path = tmp_path / "env.pth"
    torch.save(state, path)
    monkeypatch.setenv("ROI_LAB_WEIGHTS", str(path))
    bb = load_backbone("resnet18", device="cpu")
    assert bb.weights_kind == "checkpoint" and str(path) in bb.weights_source
    img = _image(64, 64)
    torch.testing.assert_close(bb.features(img, "C3")["C3"],
                               load_backbone("resnet18", weights=state, device="cpu").features(img, "C3")["C3"])
    # a checkpoint of another backbone does not break "auto" for this one: it says so and goes on
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    other = load_backbone("resnet34", device="cpu")
    assert other.weights_kind == "random"
    assert other.weights_source.startswith(f"ROI_LAB_WEIGHTS={path} not used ({path} with ")
    assert "missing keys (e.g. layer1.2.conv1.weight" in other.weights_source
    assert other.weights_source.endswith("features show geometry, not semantics")


def test_checkpoint_round_trip_fpn_matches_torchvision(tmp_path):
    ref = resnet_fpn_backbone(backbone_name="resnet50", weights=None)
    state = _seeded_state_dict(ref, seed=5)
    ref.load_state_dict(state)
    ref.eval()
    # a whole Faster R-CNN checkpoint: backbone.* keys plus detector heads that are ignored
    detector_state = {f"backbone.{k}": v for k, v in state.items()}
    detector_state["rpn.head.conv.0.0.weight"] = torch.zeros(256, 256, 3, 3)
    path = tmp_path / "frcnn.pth"
    torch.save({"model": detector_state}, path)
    bb = load_backbone("resnet50_fpn", weights=path, device="cpu")
    img = _image(96, 80, seed=2)
    x = _normalised(img)
    with torch.no_grad():
        body = ref.body(x)
        pyramid = ref(x)
    got = bb.features(img)
    for i, c in enumerate(("C2", "C3", "C4", "C5")):
        torch.testing.assert_close(got[c], body[str(i)], rtol=1e-5, atol=1e-5)
    for key, p in (("0", "P2"), ("1", "P3"), ("2", "P4"), ("3", "P5"), ("pool", "P6")):
        torch.testing.assert_close(got[p], pyramid[key], rtol=1e-5, atol=1e-5)


def test_checkpoint_round_trip_vgg16_matches_torchvision(tmp_path):
    with torch.device("meta"):  # torchvision's VGG16 without paying for its 120M-parameter classifier
        ref = torchvision.models.vgg16()
    features = ref.features.to_empty(device="cpu")
    g = torch.Generator().manual_seed(11)
    state = {f"features.{k}": torch.randn(v.shape, generator=g) * 0.05 for k, v in features.state_dict().items()}
    features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})
    state["classifier.6.bias"] = torch.zeros(1000)  # classifier weights are accepted and ignored
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    bb = load_backbone("vgg16", weights=path, device="cpu")
    # the ReLU after the 7th, 10th and 13th convolution is conv3_3, conv4_3, conv5_3
    relu_after_conv, convs = {}, 0
    for i, layer in enumerate(features):
        convs += isinstance(layer, torch.nn.Conv2d)
        if isinstance(layer, torch.nn.ReLU) and convs in (7, 10, 13):
            relu_after_conv[str(i)] = {7: "conv3_3", 10: "conv4_3", 13: "conv5_3"}[convs]
    img = _image(80, 64, seed=3)
    expected = create_feature_extractor(features.eval(), relu_after_conv)(_normalised(img))
    got = bb.features(img)
    assert set(got) == set(expected)
    for stage in got:
        torch.testing.assert_close(got[stage], expected[stage], rtol=1e-5, atol=1e-5)


def test_bad_checkpoint_wrong_architecture(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(InputValueError) as info:
        load_backbone("resnet50", weights=path, device="cpu")
    msg = str(info.value)
    assert msg.startswith("load_backbone('resnet50', weights=...) expects a state dict of torchvision's resnet50 "
                          "(keys like conv1.weight, bn1.weight); got ")
    assert f"got {path} with " in msg and "missing keys (e.g. layer1.0.conv3.weight" in msg
    assert "shape mismatches (e.g. layer1.0.conv1.weight: (64, 64, 3, 3) vs (64, 64, 1, 1)" in msg
    assert "Fix: pick the backbone the checkpoint was trained with, or save torchvision's own model: " \
           "torch.save(torchvision.models.resnet50().state_dict(), path)" in msg


def test_bad_checkpoint_unexpected_keys():
    state = dict(torchvision.models.resnet18().state_dict())
    state["head.weight"] = torch.zeros(3)
    with pytest.raises(InputValueError, match=r"the given state dict with 1 unexpected keys \(e.g. head.weight\)"):
        load_backbone("resnet18", weights=state, device="cpu")


def test_bad_checkpoint_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputValueError) as info:
        load_backbone("resnet18", weights=garbage, device="cpu")
    msg = str(info.value)
    assert "expects a checkpoint that torch.load(path, weights_only=True) can read" in msg
    assert f"got {garbage}: UnpicklingError" in msg or f"got {garbage}: " in msg
    assert msg.endswith("Fix: save the weights with torch.save(model.state_dict(), path)")

    pickled = tmp_path / "object.pth"
    torch.save({"net": OrderedDict(a=[1, 2])}, pickled)  # loads, but is not a state dict
    with pytest.raises(InputValueError, match=r"expects a state dict \{name: Tensor\}"):
        load_backbone("resnet18", weights=pickled, device="cpu")

    with pytest.raises(InputValueError) as info:
        load_backbone("resnet18", weights=str(tmp_path / "missing.pth"), device="cpu")
    assert str(info.value) == (
        "load_backbone('resnet18', weights=...) expects 'auto', 'imagenet', 'none' or the path of an existing "
        f"checkpoint; got '{tmp_path / 'missing.pth'}' (no such file).\nFix: check the path, or use weights='auto'"
    )


def test_auto_falls_back_to_random_without_network(tmp_path, monkeypatch, backbones):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    bb = load_backbone("resnet18", device="cpu")
    filename = os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    assert bb.weights_kind == "random"
    assert bb.weights_source == (
        f"random init (seed 0): ImageNet weights not found in {tmp_path}/checkpoints/{filename}; "
        "features show geometry, not semantics"
    )
    # the fallback is the same fixed-seed model as weights="none": identical weights on the same input
    # in one process, so exact by construction
    img = _image(64, 64)
    torch.testing.assert_close(bb.features(img, "C3")["C3"], backbones("resnet18").features(img, "C3")["C3"],
                               rtol=0, atol=0)


def test_auto_looks_for_every_published_imagenet_version(tmp_path, monkeypatch):
    """ResNet-50 has two ImageNet releases; both file names (from torchvision's weights API) are tried."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    paths = [p for _, _, p, _ in backbone_module._candidates("resnet50")]
    assert [p.name for p in paths] == [os.path.basename(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url),
                                       os.path.basename(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url)]
    assert all(p.parent == tmp_path / "checkpoints" for p in paths)
    fpn = [p.name for _, _, p, _ in backbone_module._candidates("resnet50_fpn")]
    assert fpn[0] == os.path.basename(
        torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url)


def test_auto_uses_the_cached_imagenet_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ref = torchvision.models.resnet18()
    state = _seeded_state_dict(ref, seed=21)
    ref.load_state_dict(state)
    cached = tmp_path / "checkpoints" / os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    cached.parent.mkdir()
    torch.save(state, cached)
    bb = load_backbone("resnet18", device="cpu")
    assert bb.weights_kind == "imagenet"
    assert bb.weights_source == f"ImageNet (torchvision ResNet18_Weights.IMAGENET1K_V1) from {cached}"
    img = _image(64, 64)
    expected = create_feature_extractor(ref.eval(), {"layer2": "C3"})(_normalised(img))["C3"]
    torch.testing.assert_close(bb.features(img, "C3")["C3"], expected, rtol=1e-5, atol=1e-5)


def test_fpn_auto_with_only_imagenet_resnet50_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    r50 = torchvision.models.resnet50()
    state = _seeded_state_dict(r50, seed=3)
    cached = tmp_path / "checkpoints" / os.path.basename(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url)
    cached.parent.mkdir()
    torch.save(state, cached)
    bb = load_backbone("resnet50_fpn", device="cpu")
    assert bb.weights_kind == "imagenet"
    assert bb.weights_source.endswith("for the ResNet-50 body; FPN layers random init (seed 0)")
    r50.load_state_dict(state)
    img = _image(64, 64)
    expected = create_feature_extractor(r50.eval(), {"layer2": "C3"})(_normalised(img))["C3"]
    torch.testing.assert_close(bb.features(img, "C3")["C3"], expected, rtol=1e-5, atol=1e-5)


def test_imagenet_required_but_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(InputValueError) as info:
        load_backbone("resnet18", weights="imagenet", device="cpu")
    msg = str(info.value)
    assert "expects torchvision's pretrained resnet18 checkpoint in the torch hub cache; got no file at " in msg
    assert "Fix: copy the .pth file there, pass weights=<path>, or try weights='download'" in msg


def test_download_is_opt_in_and_failure_falls_back_quickly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    attempts = []

    def unreachable(url, timeout=None):
        attempts.append((url, timeout))
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    assert load_backbone("resnet18", device="cpu").weights_kind == "random"
    assert attempts == []  # "auto" never tries the network
    bb = load_backbone("resnet18", weights="download", device="cpu")
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert attempts == [(url, backbone_module.DOWNLOAD_TIMEOUT_S)]
    assert backbone_module.DOWNLOAD_TIMEOUT_S <= 10
    assert bb.weights_kind == "random"
    assert bb.weights_source.startswith(f"random init (seed 0): download of {url} failed (URLError: "
                                        "<urlopen error network unreachable>); ImageNet weights not found in ")
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no partial file left behind


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_the_hash_then_uses_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ref = torchvision.models.resnet18()
    state = _seeded_state_dict(ref, seed=31)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _FakeResponse(payload))
    bad = load_backbone("resnet18", weights="download", device="cpu")  # the payload's hash is not torchvision's
    assert bad.weights_kind == "random" and "failed (ValueError: SHA-256 " in bad.weights_source
    monkeypatch.setattr(backbone_module, "_hash_prefix", lambda url: hashlib.sha256(payload).hexdigest()[:8])
    bb = load_backbone("resnet18", weights="download", device="cpu")
    assert bb.weights_kind == "imagenet"
    ref.load_state_dict(state)
    img = _image(64, 64)
    expected = create_feature_extractor(ref.eval(), {"layer2": "C3"})(_normalised(img))["C3"]
    torch.testing.assert_close(bb.features(img, "C3")["C3"], expected, rtol=1e-5, atol=1e-5)


def test_hash_prefix_of_torchvision_file_names():
    assert backbone_module._hash_prefix("https://download.pytorch.org/models/resnet50-0676ba61.pth") == "0676ba61"
    assert backbone_module._hash_prefix("https://example.com/model.pth") is None


def test_random_init_is_deterministic_and_keeps_the_global_rng():
    torch.manual_seed(42)
    a = torch.rand(3)
    torch.manual_seed(42)
    bb1 = load_backbone("resnet18", weights="none", device="cpu")
    b = torch.rand(3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    bb2 = load_backbone("resnet18", weights=None, device="cpu")
    # exact by construction: the same seeded initialisation, no arithmetic compared
    for (k, v1), v2 in zip(bb1.model.state_dict().items(), bb2.model.state_dict().values(), strict=True):
        torch.testing.assert_close(v1, v2, rtol=0, atol=0, msg=k)
    assert bb1.weights_source == "random init (seed 0): weights='none' requested; features show geometry, not semantics"


# --------------------------------------------------------------------------- arguments
def test_bad_name_device_stage_and_image(backbones):
    with pytest.raises(InputValueError, match=r"load_backbone\(name=...\) expects one of resnet18, resnet34, "
                                              r"resnet50, resnet101, resnet50_fpn, vgg16; got str 'resnet152'"):
        load_backbone("resnet152")
    if not torch.cuda.is_available():
        with pytest.raises(InputValueError, match=r"expects a device this machine has; got cuda but "
                                                  r"torch.cuda.is_available\(\) is False"):
            load_backbone("resnet18", weights="none", device="cuda")
    with pytest.raises(InputValueError, match=r"expects None, 'cpu', 'cuda' or 'cuda:N'; got str 'gpu0'"):
        load_backbone("resnet18", weights="none", device="gpu0")
    with pytest.raises(InputValueError, match=r"expects 'auto', 'imagenet', 'none', a path or a state dict; got int 3"):
        load_backbone("resnet18", weights=3, device="cpu")
    bb = backbones("resnet18")
    with pytest.raises(InputValueError, match=r"features\(stages=...\) expects stage names of resnet18: C2, C3, C4, "
                                              r"C5; got list \['P4'\].\nFix: e.g. stages=\['C4'\]"):
        bb.features(_image(64, 64), stages=["P4"])
    with pytest.raises(ShapeError, match=r"arrays are channel-last: pass image.transpose\(1, 2, 0\)"):
        bb.features(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(ShapeError, match=r"got array\[64, 64, 4\] uint8"):
        bb.features(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(InputValueError, match=r"expects float pixel values in \[0, 1\]; got values in \[0, 255\]"):
        bb.features(torch.tensor(_image(64, 64)).permute(2, 0, 1).float())
    with pytest.raises(InputValueError, match=r"expects an image of at least 32 x 32 pixels; got 40 x 20 pixels"):
        bb.features(_image(20, 40))


def test_half_is_ignored_on_cpu():
    bb = load_backbone("resnet18", weights="none", device="cpu", half=True)
    assert bb.dtype == torch.float32
    assert bb.features(_image(64, 64), "C2")["C2"].dtype == torch.float32


def test_float16_overflow_switches_to_float32(backbones):
    """Random-init ResNet-101 C4 activations pass 65504 on this image (about 6.9e4 in float32), so
    float16 gives inf; the backbone must notice and return the float32 features instead.
    Forced on the CPU here (load_backbone only allows float16 on a GPU)."""
    shared = backbones("resnet101")
    bb = backbone_module.Backbone("resnet101", shared.model, torch.device("cpu"), torch.float32, "", "random")
    img = _image(96, 96)
    expected = bb.features(img, "C4")["C4"]
    assert expected.abs().max() > 65504
    bb._to_half()  # what load_backbone(..., half=True) does on a GPU
    assert bb.dtype == torch.float16 and next(bb.model.parameters()).dtype == torch.float16
    got = bb.features(img, "C4")["C4"]
    assert bb.dtype == torch.float32 and bb.precision_note.startswith("float16 overflowed")
    assert next(shared.model.parameters()).dtype == torch.float32  # restored for the other tests too
    assert torch.isfinite(got).all()
    # exact by construction: the fallback reruns the same float32 weights on the same input
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("half", [False, True])
def test_cuda_matches_cpu(half):
    img = _image(200, 160)
    cpu = load_backbone("resnet50_fpn", weights="none", device="cpu").features(img)
    bb = load_backbone("resnet50_fpn", weights="none", device="cuda", half=half)
    assert bb.device.type == "cuda" and bb.dtype == (torch.float16 if half else torch.float32)
    gpu = bb.features(img)
    for stage, t in cpu.items():
        assert gpu[stage].device.type == "cuda" and gpu[stage].dtype == torch.float32
        scale = t.abs().max()
        tol = 2e-2 if half else 1e-3
        assert ((gpu[stage].cpu() - t).abs().max() / scale) < tol, stage


# --------------------------------------------------------------------------- summaries
def test_summary_mean_max_abs_top_variance_known_answers():
    f = torch.zeros(1, 5, 3, 4)
    f[0, 0] = 1.0  # constant: large mean, zero variance
    f[0, 2, 1, 2] = -9.0  # the largest |activation|, negative
    f[0, 3] = torch.tensor([[0.0, 8.0, 0.0, 8.0]] * 3)  # the largest spatial variance: 16 (channel 2: 6.19)
    assert pick_channel(f, "max_abs") == 2
    assert pick_channel(f, "top_variance") == 3
    np.testing.assert_array_equal(feature_summary(f, "max_abs"), f[0, 2].numpy())
    np.testing.assert_array_equal(feature_summary(f, "top_variance"), f[0, 3].numpy())
    np.testing.assert_allclose(feature_summary(f, "mean"), f[0].mean(0).numpy())
    for kind in ("mean", "max_abs", "top_variance"):
        out = feature_summary(f[0], kind)  # [C, h, w] works too
        assert out.shape == (3, 4) and out.dtype == np.float32


def test_summary_pca_against_numpy_svd():
    rng = np.random.default_rng(0)
    h, w, c = 6, 7, 8
    data = rng.normal(size=(h * w, c)) * np.array([5.0, 3.0, 2.0, 0.5, 0.4, 0.3, 0.2, 0.1])
    data = data @ np.linalg.qr(rng.normal(size=(c, c)))[0]  # rotate: components are not plain channels
    f = torch.from_numpy(data.T.reshape(1, c, h, w).astype(np.float32))
    out = feature_summary(f, "pca")
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    centred = data - data.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = np.empty((h * w, 3))
    for k in range(3):
        v = vt[k] * np.sign(vt[k][np.argmax(np.abs(vt[k]))])  # largest loading positive
        p = centred @ v
        expected[:, k] = np.round((p - p.min()) / (p.max() - p.min()) * 255)
    assert np.abs(out.reshape(-1, 3).astype(int) - expected).max() <= 1
    # each channel uses the full 0..255 range
    assert out.reshape(-1, 3).min(0).tolist() == [0, 0, 0] and out.reshape(-1, 3).max(0).tolist() == [255] * 3


def test_summary_pca_with_fewer_than_three_channels_and_constant_maps():
    f = torch.zeros(1, 2, 2, 3)
    f[0, 0] = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    out = feature_summary(f, "pca")
    assert out[..., 0].tolist() == [[0, 51, 102], [153, 204, 255]]
    assert out[..., 1:].max() == 0
    assert feature_summary(torch.ones(1, 4, 3, 3), "pca").max() == 0


def test_summary_on_real_features(backbones):
    feats = backbones("resnet18").features(_image(96, 64), stages="C3")["C3"]
    assert feature_summary(feats, "pca").shape == (12, 8, 3)
    assert feature_summary(feats, "max_abs").shape == (12, 8)


def test_summary_errors():
    with pytest.raises(InputValueError, match=r"feature_summary\(kind=...\) expects one of mean, max_abs, "
                                              r"top_variance, pca; got str 'median'"):
        feature_summary(torch.zeros(1, 2, 3, 3), "median")
    with pytest.raises(ShapeError, match=r"expects one feature map Tensor\[1, C, h, w\] or Tensor\[C, h, w\]; "
                                         r"got Tensor\[2, 3, 4, 4\] float32 on cpu"):
        feature_summary(torch.zeros(2, 3, 4, 4))
    with pytest.raises(InputValueError, match=r"pick_channel\(kind=...\) expects 'max_abs' or 'top_variance'"):
        pick_channel(torch.zeros(1, 2, 3, 3), "mean")


# --------------------------------------------------------------------------- hostile checkpoints and maps (issue 15)
# Clear InputValueErrors for checkpoints that cannot be weights, a warning naming the tensors for NaN weights,
# a PCA view that survives NaN, and a bounded fuzz campaign over odd state dicts.
@pytest.fixture(scope="module")
def state():
    return dict(torchvision.models.resnet18().state_dict())


WHERE = "load_backbone('resnet18', weights=...)"


def test_empty_checkpoint_file_is_an_input_value_error(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(InputValueError) as info:  # was IndexError inside the error handler
        load_backbone("resnet18", weights=path, device="cpu")
    msg = str(info.value)
    assert msg.startswith(f"{WHERE} expects a checkpoint that torch.load(path, weights_only=True) can read")
    assert "(an empty file)" in msg


@pytest.mark.parametrize("key, shown", [(0, "int 0"), (("conv1", "weight"), "tuple ('conv1', 'weight')")],
                         ids=["int", "tuple"])
def test_state_dict_keys_that_are_not_strings(state, tmp_path, key, shown):
    odd = dict(state)
    odd[key] = odd.pop("conv1.weight")
    for weights in (odd, tmp_path / "odd.pth"):
        if not isinstance(weights, dict):
            torch.save(odd, weights)
        with pytest.raises(InputValueError) as info:  # was AttributeError: 'int' object has no attribute ...
            load_backbone("resnet18", weights=weights, device="cpu")
        assert "expects a state dict whose keys are parameter names (str), like 'conv1.weight'" in str(info.value)
        assert f"1 keys that are not strings, e.g. {shown}" in str(info.value)


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda t: torch.empty_like(t, device="meta"), "a meta tensor, without values"),
        (lambda t: t.to_sparse(), "layout sparse_coo"),
        (lambda t: t.to(torch.complex64), "dtype complex64"),
    ],
    ids=["meta", "sparse", "complex"],
)
def test_tensors_without_loadable_values_are_refused(state, make, why):
    odd = dict(state)
    odd["conv1.weight"] = make(odd["conv1.weight"])
    with pytest.raises(InputValueError) as info:
        load_backbone("resnet18", weights=odd, device="cpu")
    msg = str(info.value)
    assert msg.startswith(f"{WHERE} expects dense tensors with values (strided layout, on cpu or cuda, real "
                          "floating or integer dtype); got the given dict: 1 tensors that are not, e.g. "
                          f"conv1.weight ({why}).")


def test_nan_weights_load_with_a_warning_naming_the_tensors(state):
    odd = dict(state)
    odd["conv1.weight"] = torch.full_like(odd["conv1.weight"], float("nan"))
    odd["layer1.0.bn1.running_var"] = odd["layer1.0.bn1.running_var"].clone()
    odd["layer1.0.bn1.running_var"][3] = float("inf")
    with pytest.warns(NonFiniteWeightsWarning) as record:
        bb = load_backbone("resnet18", weights=odd, device="cpu")
    note = ("2 weight tensors hold NaN or inf values: conv1.weight (9,408 of 9,408), layer1.0.bn1.running_var "
            "(1 of 64); the features will be NaN (a diverged training run?)")
    assert str(record[0].message) == f"load_backbone('resnet18'): {note}"
    assert bb.weights_source.endswith(f"; WARNING: {note}")


def test_finite_weights_load_without_a_warning(state):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWeightsWarning)
        bb = load_backbone("resnet18", weights=state, device="cpu")
    assert "WARNING" not in bb.weights_source


def test_pca_of_a_map_with_nan_leaves_those_pixels_out_and_black():
    rng = np.random.default_rng(0)
    f = torch.from_numpy(rng.standard_normal((1, 6, 5, 7)).astype(np.float32))
    f[0, 2, 1, 3] = float("nan")
    f[0, :, 4, 0] = float("inf")
    out = feature_summary(f, "pca")  # was torch._LinAlgError
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert out[1, 3].tolist() == [0, 0, 0] and out[4, 0].tolist() == [0, 0, 0]
    keep = torch.isfinite(f[0]).all(0)  # [5, 7]
    alone = feature_summary(f[0][:, keep][:, :, None], "pca")[:, 0]  # the PCA of the finite pixels only
    np.testing.assert_array_equal(out[keep.numpy()], alone)  # exact: the same computation on the same pixels
    assert out[keep.numpy()].max() == 255  # and it is a real PCA view, not all black


def test_pca_of_an_all_nan_map_is_black():
    out = feature_summary(torch.full((1, 4, 3, 3), float("nan")), "pca")
    assert out.shape == (3, 3, 3) and not out.any()


# --------------------------------------------------------------------------- bounded fuzz campaign
_EDITS = {
    "nan": lambda t: torch.full_like(t, float("nan")) if t.is_floating_point() else t,
    "meta": lambda t: torch.empty_like(t, device="meta"),
    "sparse": lambda t: t.to_sparse(),
    "bool": lambda t: t.bool(),
    "half": lambda t: t.half(),
    "int": lambda t: t.long(),
    "shape": lambda t: t.flatten()[:1].clone(),
    "empty": lambda t: t[:0],
}


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                    HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 121), st.sampled_from(sorted(_EDITS))), max_size=3),
       drop=st.lists(st.integers(0, 121), max_size=2), wrap=st.sampled_from([None, "state_dict", "model", "module."]),
       extra_key=st.sampled_from([None, 7, ("a",), "fc.extra", "head.weight"]))
def test_fuzz_state_dicts_load_or_raise_input_value_error(state, edits, drop, wrap, extra_key):
    keys = list(state)
    odd = dict(state)
    for i, edit in edits:
        key = keys[i % len(keys)]
        try:
            odd[key] = _EDITS[edit](odd[key])
        except (NotImplementedError, RuntimeError, IndexError):  # e.g. to_sparse of a meta tensor: not an edit
            pass
    for i in drop:
        odd.pop(keys[i % len(keys)], None)
    if extra_key is not None:
        odd[extra_key] = torch.zeros(2)
    if wrap == "module.":
        odd = {(f"module.{k}" if isinstance(k, str) else k): v for k, v in odd.items()}
    elif wrap:
        odd = {wrap: odd}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWeightsWarning)
        try:
            bb = load_backbone("resnet18", weights=odd, device="cpu")
        except InputValueError:
            return
    assert bb.weights_source.startswith("state dict passed in")

def test_fpn_fallback_notice_names_the_coco_checkpoint_it_looked_for(tmp_path, monkeypatch):
    """resnet50_fpn looks for torchvision's COCO Faster R-CNN first: the notice must not say "ImageNet" only."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    bb = load_backbone("resnet50_fpn", device="cpu")
    coco = os.path.basename(torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url)
    assert bb.weights_kind == "random"
    assert bb.weights_source.startswith(
        f"random init (seed 0): COCO Faster R-CNN or ImageNet weights not found in {tmp_path}/checkpoints/{coco} or "
    )
