"""Backbone feature maps: torchvision ResNets, a ResNet-50-FPN and VGG16, at the strides detectors use.

:func:`load_backbone` builds the model; :meth:`Backbone.features` runs an RGB image through it and
returns the stage maps a detector would pool from. By default nothing here touches the network:
ImageNet (or COCO) weights are used only when torchvision's checkpoint is already in the local
torch hub cache, or when you pass a checkpoint file; otherwise the model gets a fixed-seed random
init and :attr:`Backbone.weights_source` says so in words. ``weights="download"`` opts in to a
download with a short timeout.

Stages and nominal strides:

- resnet18, resnet34, resnet50, resnet101: C2, C3, C4, C5 (layer1..layer4) at strides 4, 8, 16, 32.
- resnet50_fpn: C2..C5 as above, and P2..P6 at strides 4..64 (P6 is torchvision's "pool" level).
- vgg16: conv3_3, conv4_3, conv5_3 (each after its ReLU) at strides 4, 8, 16.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from roi_lab.errors import InputValueError, ShapeError, describe

__all__ = ["BACKBONES", "Backbone", "backbone_info", "load_backbone", "feature_summary", "SUMMARY_KINDS",
           "pick_channel"]

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet50_fpn", "vgg16")
SUMMARY_KINDS: tuple[str, ...] = ("mean", "max_abs", "top_variance", "pca")
RANDOM_SEED = 0
DOWNLOAD_TIMEOUT_S = 5.0  # per socket operation, for weights="download" only
DOWNLOAD_DEADLINE_S = 180.0  # for the whole file
MIN_IMAGE_SIDE = 32

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNET_STAGES = ("C2", "C3", "C4", "C5")
_FPN_STAGES = ("C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6")
_VGG_STAGES = ("conv3_3", "conv4_3", "conv5_3")
_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32, "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64,
            "conv3_3": 4, "conv4_3": 8, "conv5_3": 16}
# index of the ReLU after conv3_3 / conv4_3 / conv5_3 in torchvision.models.vgg16().features
_VGG_RELU_INDEX = {"conv3_3": 15, "conv4_3": 22, "conv5_3": 29}
_RESNET_LAYER = {"C2": "layer1", "C3": "layer2", "C4": "layer3", "C5": "layer4"}
_WEIGHT_ENUMS = {
    "resnet18": ("ResNet18_Weights", ("IMAGENET1K_V1",)),
    "resnet34": ("ResNet34_Weights", ("IMAGENET1K_V1",)),
    "resnet50": ("ResNet50_Weights", ("IMAGENET1K_V2", "IMAGENET1K_V1")),
    "resnet101": ("ResNet101_Weights", ("IMAGENET1K_V2", "IMAGENET1K_V1")),
    "vgg16": ("VGG16_Weights", ("IMAGENET1K_V1",)),
}
_GEOMETRY_NOTE = "features show geometry, not semantics"


# --------------------------------------------------------------------------- weights
def _hub_checkpoint(enum_name: str, member: str, module: Any = torchvision.models) -> tuple[str, Path, str]:
    """Label, local-cache path and URL of a torchvision weights entry (no network)."""
    weights = getattr(getattr(module, enum_name), member)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    return f"torchvision {enum_name}.{member}", path, weights.url


def _candidates(name: str) -> list[tuple[str, str, Path, str]]:
    """(kind, label, path, url) of pretrained checkpoints to look for in the torch hub cache, best first."""
    out: list[tuple[str, str, Path, str]] = []
    if name == "resnet50_fpn":
        out.append(("coco", *_hub_checkpoint("FasterRCNN_ResNet50_FPN_Weights", "COCO_V1",
                                             torchvision.models.detection)))
        name = "resnet50"
    enum_name, members = _WEIGHT_ENUMS[name]
    for member in members:
        out.append(("imagenet", *_hub_checkpoint(enum_name, member)))
    return out


def _hash_prefix(url: str) -> str | None:
    """torchvision names its files ``<name>-<first hex digits of the SHA-256>.pth``."""
    stem = os.path.basename(url).rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` within DOWNLOAD_TIMEOUT_S per socket operation and
    DOWNLOAD_DEADLINE_S in all, checking torchvision's SHA-256 prefix; atomic (temp file + rename)."""
    import hashlib
    import tempfile
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    start, sha = time.monotonic(), hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            while chunk := resp.read(1 << 20):
                if time.monotonic() - start > DOWNLOAD_DEADLINE_S:
                    raise TimeoutError(f"not finished after {DOWNLOAD_DEADLINE_S:.0f} s")
                sha.update(chunk)
                f.write(chunk)
        prefix = _hash_prefix(url)
        if prefix and not sha.hexdigest().startswith(prefix):
            raise ValueError(f"SHA-256 {sha.hexdigest()[:12]}... does not start with {prefix}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_checkpoint(path: Path, where: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, weights_only refusals
        raise InputValueError(
            where,
            expected="a checkpoint that torch.load(path, weights_only=True) can read (a state dict of tensors)",
            got=f"{path}: {type(exc).__name__}: {(str(exc).splitlines() or ['(no message)'])[0][:200]}"
            + (" (an empty file)" if path.stat().st_size == 0 else ""),
            fix="save the weights with torch.save(model.state_dict(), path)",
        ) from None
    return _unwrap_state_dict(state, str(path), where)


def _unwrap_state_dict(state: Any, source: str, where: str) -> dict[str, Tensor]:
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputValueError(
            where,
            expected="a state dict {name: Tensor} (or a dict holding one under 'state_dict' or 'model')",
            got=f"{source}: {describe(state) if not isinstance(state, Mapping) else 'a dict with non-tensor values'}",
            fix="save the weights with torch.save(model.state_dict(), path)",
        )
    odd_keys = [k for k in state if not isinstance(k, str)]
    if odd_keys:
        raise InputValueError(
            where,
            expected="a state dict whose keys are parameter names (str), like 'conv1.weight'",
            got=f"{source}: {len(odd_keys)} keys that are not strings, e.g. {describe(odd_keys[0])}",
            fix="save the weights with torch.save(model.state_dict(), path)",
        )
    odd = [(k, _tensor_problem(v)) for k, v in state.items() if _tensor_problem(v)]
    if odd:
        raise InputValueError(
            where,
            expected="dense tensors with values (strided layout, on cpu or cuda, real floating or integer dtype)",
            got=f"{source}: {len(odd)} tensors that are not, e.g. {odd[0][0]} ({odd[0][1]})",
            fix="save real weights: torch.save({k: v.to_dense().cpu() for k, v in state_dict.items()}, path); "
            "meta tensors hold no values at all",
        )
    state = dict(state)
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _tensor_problem(t: Tensor) -> str:
    """Why a state-dict value cannot be loaded as weights, or ``""``."""
    if t.device.type == "meta":
        return "a meta tensor, without values"
    if t.layout != torch.strided:
        return f"layout {str(t.layout).replace('torch.', '')}"
    if t.is_quantized:
        return f"quantized {str(t.dtype).replace('torch.', '')}"
    if t.is_complex() or t.dtype == torch.bool:
        return f"dtype {str(t.dtype).replace('torch.', '')}"
    return ""


def _non_finite_note(model: nn.Module) -> str:
    """``""``, or a sentence naming the tensors of ``model`` that hold NaN or inf (its features would too)."""
    bad = [(name, int((~torch.isfinite(t)).sum()), t.numel()) for name, t in model.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if not bad:
        return ""
    shown = ", ".join(f"{name} ({n:,} of {total:,})" for name, n, total in bad[:4])
    more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
    return (f"{len(bad)} weight tensors hold NaN or inf values: {shown}{more}; the features will be NaN "
            "(a diverged training run?)")


class NonFiniteWeightsWarning(UserWarning):
    """load_backbone loaded weights that hold NaN or inf values."""


# --------------------------------------------------------------------------- models
class _VGGFeatures(nn.Module):
    """``torchvision.models.vgg16().features`` under the same state-dict keys (``features.N.*``)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"], batch_norm=False)
        for m in self.features.modules():  # the same init as torchvision's VGG.__init__
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)


def _build(name: str) -> nn.Module:
    if name == "resnet50_fpn":
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        return resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=0)
    if name == "vgg16":
        return _VGGFeatures()
    return getattr(torchvision.models, name)(weights=None)


def _build_seeded(name: str) -> nn.Module:
    """Build with a fixed-seed random init, without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return _build(name)


def _build_empty(name: str) -> nn.Module:
    """Build without the (slow) random init, for weights that a checkpoint overwrites: zero-filled."""
    with torch.device("meta"):
        model = _build(name)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    return model


def _ignored_prefixes(name: str) -> tuple[str, ...]:
    """State-dict keys we neither use nor require (classifier heads, detector heads)."""
    if name == "vgg16":
        return ("classifier.",)
    if name == "resnet50_fpn":
        return ()
    return ("fc.",)


def _load_into(model: nn.Module, name: str, state: dict[str, Tensor], source: str, where: str) -> None:
    """load_state_dict with the checks and messages a person needs when the keys do not fit."""
    if name == "resnet50_fpn" and any(k.startswith("backbone.") for k in state):  # a whole Faster R-CNN
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    ignored = _ignored_prefixes(name)
    own = model.state_dict()

    def counts(k: str) -> bool:
        return not k.startswith(ignored) and not k.endswith("num_batches_tracked")

    missing = [k for k in own if k not in state and counts(k)]
    unexpected = [k for k in state if k not in own and counts(k)]
    shape_bad = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape_bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shape_bad:
            parts.append(f"{len(shape_bad)} shape mismatches (e.g. {'; '.join(shape_bad[:2])})")
        raise InputValueError(
            where,
            expected=f"a state dict of torchvision's {name} (keys like {', '.join(list(own)[:2])})",
            got=f"{source} with {'; '.join(parts)}",
            fix=f"pick the backbone the checkpoint was trained with, or save torchvision's own model: "
            f"torch.save({_constructor_hint(name)}.state_dict(), path)",
        )
    state = {k: v for k, v in state.items() if k in own or k.endswith("num_batches_tracked")}
    model.load_state_dict(state, strict=False)


def _constructor_hint(name: str) -> str:
    if name == "resnet50_fpn":
        return "resnet_fpn_backbone(backbone_name='resnet50', weights=None)"
    return f"torchvision.models.{name}()"


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputValueError("load_backbone(device=...)", expected="None, 'cpu', 'cuda' or 'cuda:N'",
                              got=describe(device), fix="pass device=None to pick CUDA when available") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputValueError("load_backbone(device=...)", expected="a device this machine has",
                              got=f"{dev} but torch.cuda.is_available() is False",
                              fix="pass device='cpu', or device=None to pick CUDA only when present")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputValueError("load_backbone(device=...)", expected=f"cuda:0..cuda:{torch.cuda.device_count() - 1}",
                              got=str(dev), fix="pass device='cuda'")
    return dev


def backbone_info(name: str) -> dict[str, Any]:
    """Stages, nominal strides, channels and default stage of a backbone, without building it.

    Example:
        >>> info = backbone_info("vgg16")
        >>> info["stages"], info["nominal_strides"]["conv5_3"], info["channels"]["conv5_3"], info["default_stage"]
        (('conv3_3', 'conv4_3', 'conv5_3'), 16, 512, 'conv5_3')
    """
    if name not in BACKBONES:
        raise InputValueError("backbone_info(name=...)", expected=f"one of {', '.join(BACKBONES)}", got=describe(name),
                              fix="e.g. backbone_info('resnet50')")
    stages = _FPN_STAGES if name == "resnet50_fpn" else _VGG_STAGES if name == "vgg16" else _RESNET_STAGES
    wide = name in ("resnet50", "resnet101", "resnet50_fpn")
    c = (256, 512, 1024, 2048) if wide else (64, 128, 256, 512)
    channels = {"C2": c[0], "C3": c[1], "C4": c[2], "C5": c[3]}
    if name == "resnet50_fpn":
        channels.update({p: 256 for p in ("P2", "P3", "P4", "P5", "P6")})
    if name == "vgg16":
        channels = {"conv3_3": 256, "conv4_3": 512, "conv5_3": 512}
    return {
        "stages": stages,
        "nominal_strides": {s: _STRIDES[s] for s in stages},
        "channels": channels,
        "default_stage": {"resnet50_fpn": "P4", "vgg16": "conv5_3"}.get(name, "C4"),
    }


class Backbone:
    """A loaded backbone: call :meth:`features` on an RGB image.

    Attributes:
        name (str): one of :data:`BACKBONES`.
        model (nn.Module): the torchvision module (eval mode, on :attr:`device`).
        device (torch.device): where the forward pass runs.
        dtype (torch.dtype): compute dtype (float16 only when ``half=True`` on a GPU).
        weights_source (str): which weights are in use, in words.
        weights_kind (str): ``"imagenet"``, ``"coco"``, ``"checkpoint"`` or ``"random"``.
        stages (tuple[str, ...]): stage names, shallow to deep.
        nominal_strides (dict[str, int]): the stride each stage is designed for.
        channels (dict[str, int]): channels per stage.
        default_stage (str): the stage a Faster R-CNN of this kind pools from (C4, P4 or conv5_3).
        last_forward_ms (float): wall time of the last :meth:`features` call (NaN before the first).
        precision_note (str): empty, or why a float16 backbone switched itself to float32.
    """

    def __init__(self, name: str, model: nn.Module, device: torch.device, dtype: torch.dtype,
                 weights_source: str, weights_kind: str) -> None:
        self.name, self.model, self.device, self.dtype = name, model, device, dtype
        self.weights_source, self.weights_kind = weights_source, weights_kind
        info = backbone_info(name)
        self.stages, self.nominal_strides = info["stages"], info["nominal_strides"]
        self.channels, self.default_stage = info["channels"], info["default_stage"]
        self.last_forward_ms = float("nan")
        self.precision_note = ""
        self._float_state: dict[str, Tensor] | None = None
        self._mean = torch.tensor(_IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(_IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def _to_half(self) -> None:
        """Compute in float16, keeping a float32 copy of the weights (on the CPU) for the overflow fallback."""
        self._float_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.model.half()
        self.dtype = torch.float16

    def __repr__(self) -> str:
        return f"Backbone({self.name!r}, device={self.device}, dtype={self.dtype}, weights={self.weights_source!r})"

    # ----------------------------------------------------------------------- input
    def _to_input(self, image: np.ndarray | Tensor) -> Tensor:
        """RGB image -> normalised Tensor[1, 3, H, W] on the device, in the compute dtype."""
        where = f"Backbone({self.name!r}).features(image=...)"
        expected = ("an RGB image: ndarray[H, W, 3] uint8, Tensor[H, W, 3] uint8, or Tensor[3, H, W] / "
                    "Tensor[1, 3, H, W] (uint8 0..255 or float 0..1)")
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                fix = "convert it first, e.g. decode_image(data) or np.repeat(gray[..., None], 3, 2)"
                if image.ndim == 3 and image.shape[0] == 3:
                    fix = "arrays are channel-last: pass image.transpose(1, 2, 0)"
                raise ShapeError(where, expected=expected, got=describe(image), fix=fix)
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        elif isinstance(image, Tensor):
            if image.dim() == 4 and image.shape[:2] == (1, 3):
                x = image
            elif image.dim() == 3 and image.shape[0] == 3:
                x = image[None]
            elif image.dim() == 3 and image.shape[2] == 3:
                x = image.permute(2, 0, 1)[None]
            else:
                raise ShapeError(where, expected=expected, got=describe(image),
                                 fix="one image at a time; batch size 1 and 3 channels")
        else:
            raise ShapeError(where, expected=expected, got=describe(image), fix="decode the file with decode_image")
        h, w = x.shape[-2:]
        if min(h, w) < MIN_IMAGE_SIDE:
            raise InputValueError(where, expected=f"an image of at least {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels",
                                  got=f"{w} x {h} pixels (W x H)", fix="upscale it, e.g. cv2.resize")
        if x.dtype == torch.uint8:
            x = x.to(self.device).float() / 255.0
        elif x.is_floating_point():
            x = x.to(self.device).float()
            lo, hi = float(x.min()), float(x.max())
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
                raise InputValueError(where, expected="float pixel values in [0, 1]",
                                      got=f"values in [{lo:g}, {hi:g}]",
                                      fix="pass uint8 pixels, or divide 0..255 floats by 255")
        else:
            raise ShapeError(where, expected=expected, got=describe(image),
                             fix="convert to uint8: image.to(torch.uint8)")
        return ((x - self._mean) / self._std).to(self.dtype)

    def _check_stages(self, stages: str | Sequence[str] | None) -> tuple[str, ...]:
        if stages is None:
            return self.stages
        wanted = (stages,) if isinstance(stages, str) else tuple(stages)
        bad = [s for s in wanted if s not in self.stages]
        if bad or not wanted:
            raise InputValueError(f"Backbone({self.name!r}).features(stages=...)",
                                  expected=f"stage names of {self.name}: {', '.join(self.stages)}",
                                  got=describe(stages), fix=f"e.g. stages=[{self.default_stage!r}]")
        return tuple(s for s in self.stages if s in wanted)

    # ----------------------------------------------------------------------- forward
    def _forward(self, x: Tensor, wanted: tuple[str, ...]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.name == "vgg16":
            last = max(_VGG_RELU_INDEX[s] for s in wanted)
            at = {_VGG_RELU_INDEX[s]: s for s in wanted}
            for i, layer in enumerate(self.model.features[: last + 1]):
                x = layer(x)
                if i in at:
                    out[at[i]] = x
            return out
        if self.name == "resnet50_fpn":
            body, want_p = self.model.body, any(s.startswith("P") for s in wanted)
            need = _RESNET_STAGES if want_p else wanted
            stem = nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool)
            layers = {s: getattr(body, _RESNET_LAYER[s]) for s in _RESNET_STAGES}
        else:
            m, need = self.model, wanted
            stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
            layers = {s: getattr(m, _RESNET_LAYER[s]) for s in _RESNET_STAGES}
        deepest = max(_RESNET_STAGES.index(s) for s in need if s in _RESNET_STAGES)
        c: dict[str, Tensor] = {}
        x = stem(x)
        for s in _RESNET_STAGES[: deepest + 1]:
            x = layers[s](x)
            c[s] = x
        if self.name == "resnet50_fpn" and want_p:
            p = self.model.fpn(OrderedDict((str(i), c[s]) for i, s in enumerate(_RESNET_STAGES)))
            c.update({"P2": p["0"], "P3": p["1"], "P4": p["2"], "P5": p["3"], "P6": p["pool"]})
        return {s: c[s] for s in wanted}

    def features(self, image: np.ndarray | Tensor, stages: str | Sequence[str] | None = None) -> dict[str, Tensor]:
        """Run the image through the backbone, only as deep as the deepest requested stage.

        The image is scaled to [0, 1] and normalised with the ImageNet mean and std, as torchvision's
        weights expect; it is not resized.

        Args:
            image (ndarray[H, W, 3] uint8 | Tensor): an RGB image (see :func:`roi_lab.decode_image`);
                tensors may be ``[H, W, 3]`` uint8 or ``[3, H, W]`` / ``[1, 3, H, W]`` (uint8, or float in 0..1).
            stages (str | list[str] | None): stage names (see :attr:`stages`); ``None`` for all.

        Returns:
            dict[str, Tensor[1, C, h, w]]: float32 maps on :attr:`device`, shallow to deep.

        Example:
            >>> import numpy as np
            >>> bb = load_backbone("resnet18", weights="none", device="cpu")
            >>> feats = bb.features(np.zeros((200, 168, 3), np.uint8), stages=["C4"])
            >>> tuple(feats["C4"].shape)   # ceil(200 / 16), ceil(168 / 16)
            (1, 256, 13, 11)
        """
        wanted = self._check_stages(stages)
        x = self._to_input(image)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self._forward(x, wanted)
            if self.dtype == torch.float16 and not all(bool(torch.isfinite(t).all()) for t in out.values()):
                # float16 tops out at 65504; random-init ResNet-101 C4 activations exceed it. Switch for good.
                self.model.float()
                if self._float_state is not None:  # the weights before rounding to float16
                    self.model.load_state_dict(self._float_state)
                self.dtype = torch.float32
                self.precision_note = "float16 overflowed (activations above 65504); switched to float32"
                out = self._forward(self._to_input(image), wanted)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.last_forward_ms = (time.perf_counter() - start) * 1000.0
        return {s: t.float() for s, t in out.items()}

    def feature_size(self, image_size: tuple[int, int], stage: str) -> tuple[int, int]:
        """The (h, w) of a stage for an (H, W) image, from the layers' size rules, without a forward pass.

        Convention:
            ResNet convolutions and max-pools with padding round up at every stride-2 step, so
            ``h = ceil(H / stride)`` (1000 -> 63 at stride 16). VGG's 2x2 max-pools round down,
            so ``h = floor(H / stride)``. P6 is a stride-2 max-pool of P5 with kernel 1: ``ceil(H / 64)``.

        Example:
            >>> load_backbone("resnet18", weights="none", device="cpu").feature_size((1000, 800), "C4")
            (63, 50)
        """
        self._check_stages([stage])
        s = self.nominal_strides[stage]
        if self.name == "vgg16":
            return image_size[0] // s, image_size[1] // s
        return -(-image_size[0] // s), -(-image_size[1] // s)

    def effective_strides(self, image_size: tuple[int, int],
                          feature_shapes: Mapping[str, Tensor | Sequence[int]]) -> dict[str, tuple[float, float]]:
        """Measured strides ``(H / h, W / w)`` per stage, from real feature shapes.

        Args:
            image_size ((H, W)): the image the features came from.
            feature_shapes (dict[str, Tensor | shape]): the :meth:`features` output, or shapes
                ending in ``(h, w)``.

        Returns:
            dict[str, (float, float)]: e.g. ``{"C4": (15.873..., 16.0)}`` for a 1000 x 800 image.
        """
        out = {}
        for stage, t in feature_shapes.items():
            shape = tuple(t.shape) if isinstance(t, Tensor) else tuple(t)
            h, w = shape[-2:]
            out[stage] = (image_size[0] / h, image_size[1] / w)
        return out


def load_backbone(name: str = "resnet50", weights: str | os.PathLike | Mapping | None = "auto",
                  device: str | torch.device | None = None, *, half: bool = False) -> Backbone:
    """Build a torchvision backbone in eval mode, with honest weights and no network access.

    Weights:
        - ``"auto"`` (default): the file in ``$ROI_LAB_WEIGHTS`` when set and it fits this backbone
          (when it does not, ``weights_source`` says why and the search goes on); else torchvision's
          pretrained checkpoint if it is already in the torch hub cache
          (``torch.hub.get_dir()/checkpoints``; for ``resnet50_fpn`` the COCO Faster R-CNN first, then
          ImageNet ResNet-50 for the body); else a fixed-seed random init. Never downloads.
        - ``"imagenet"``: like ``"auto"`` without the environment variable, but a missing cache file is an error.
        - ``"download"`` (opt-in): like ``"auto"``, but when no cached file exists, fetch torchvision's
          checkpoint into the cache first (5 s socket timeout, 180 s in all, SHA-256 prefix checked);
          on any failure fall back to the random init and say why in ``weights_source``.
        - a path (str or Path): a local checkpoint read with ``torch.load(weights_only=True)``;
          a plain state dict, or one under a ``"state_dict"`` / ``"model"`` key. For ``resnet50_fpn``
          a whole Faster R-CNN state dict (``backbone.*`` keys) works too.
        - ``"none"`` / ``None``: random init with seed 0.

    Args:
        name (str): one of :data:`BACKBONES`.
        weights (str | Path | dict | None): see above.
        device (str | torch.device | None): ``None`` picks CUDA when available, else CPU.
        half (bool): float16 compute on a GPU; ignored on CPU (``dtype`` stays float32).

    Returns:
        Backbone

    Raises:
        InputValueError: an unknown name or device, a missing or unreadable checkpoint (an empty file, a
            pickle that ``weights_only`` refuses), keys that are not strings, meta / sparse / quantized / complex
            tensors, or a state dict of another architecture.

    Warns:
        NonFiniteWeightsWarning: weights that hold NaN or inf (their tensors are named, also in
            ``weights_source``): the features would be NaN.

    Example:
        >>> bb = load_backbone("resnet18", weights="none", device="cpu")
        >>> bb.stages, bb.nominal_strides["C4"], bb.weights_source.startswith("random init (seed 0)")
        (('C2', 'C3', 'C4', 'C5'), 16, True)
    """
    where = "load_backbone"
    if name not in BACKBONES:
        raise InputValueError(f"{where}(name=...)", expected=f"one of {', '.join(BACKBONES)}", got=describe(name),
                              fix="e.g. load_backbone('resnet50')")
    dev = _resolve_device(device)
    where_w = f"{where}({name!r}, weights=...)"

    env_note = ""
    if isinstance(weights, str) and weights == "auto" and os.environ.get("ROI_LAB_WEIGHTS"):
        env_path = os.environ["ROI_LAB_WEIGHTS"]
        try:  # the checkpoint may belong to another backbone than the one picked: then "auto" goes on
            return load_backbone(name, env_path, device, half=half)
        except InputValueError as exc:
            env_note = f"ROI_LAB_WEIGHTS={env_path} not used ({exc.got}); "
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        model = _build_seeded(name)
        kind, source = "random", f"random init (seed {RANDOM_SEED}): weights='none' requested; {_GEOMETRY_NOTE}"
    elif isinstance(weights, Mapping):
        model = _build_empty(name)
        _load_into(model, name, _unwrap_state_dict(weights, "the given dict", where_w), "the given state dict", where_w)
        kind, source = "checkpoint", f"state dict passed in ({len(weights)} entries)"
    elif isinstance(weights, str) and weights.lower() in ("auto", "imagenet", "download"):
        model, kind, source = _load_pretrained_or_random(name, required=weights.lower() == "imagenet",
                                                         download=weights.lower() == "download")
        source = env_note + source
    elif isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputValueError(where_w, expected="'auto', 'imagenet', 'none' or the path of an existing checkpoint",
                                  got=f"{str(weights)!r} (no such file)",
                                  fix="check the path, or use weights='auto'")
        model = _build_empty(name)
        _load_into(model, name, _load_checkpoint(path, where_w), str(path), where_w)
        kind, source = "checkpoint", f"checkpoint {path}"
    else:
        raise InputValueError(where_w, expected="'auto', 'imagenet', 'none', a path or a state dict",
                              got=describe(weights), fix="e.g. weights='auto'")
    model.eval().requires_grad_(False)
    note = _non_finite_note(model)
    if note:
        warnings.warn(f"load_backbone({name!r}): {note}", NonFiniteWeightsWarning, stacklevel=2)
        source = f"{source}; WARNING: {note}"
    model.to(device=dev)
    bb = Backbone(name, model, dev, torch.float32, source, kind)
    if half and dev.type == "cuda":
        bb._to_half()
    return bb


def _load_pretrained_or_random(name: str, *, required: bool, download: bool = False) -> tuple[nn.Module, str, str]:
    where = f"load_backbone({name!r}, weights=...)"
    candidates = _candidates(name)
    failure = ""
    if download and not any(path.is_file() for _, _, path, _ in candidates):
        _, _, path, url = candidates[0]
        try:
            _download(url, path)
        except Exception as exc:  # network down, timeout, HTTP error, bad hash, disk full
            failure = f"download of {url} failed ({type(exc).__name__}: {str(exc)[:120]}); "
    for kind, label, path, _ in candidates:
        if not path.is_file():
            continue
        state = _load_checkpoint(path, where)
        if name == "resnet50_fpn" and kind == "imagenet":
            model = _build_seeded(name)  # ImageNet ResNet-50 for the body; FPN stays random
            body_state = {f"body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
            body_state.update({k: v for k, v in model.state_dict().items() if k.startswith("fpn.")})
            _load_into(model, name, body_state, str(path), where)
            return model, kind, (f"ImageNet ({label}) from {path} for the ResNet-50 body; "
                                 f"FPN layers random init (seed {RANDOM_SEED})")
        model = _build_empty(name)
        _load_into(model, name, state, str(path), where)
        what = "COCO Faster R-CNN" if kind == "coco" else "ImageNet"
        return model, kind, f"{what} ({label}) from {path}"
    looked = " or ".join(str(p) for _, _, p, _ in candidates)
    kinds = " or ".join(dict.fromkeys("COCO Faster R-CNN" if k == "coco" else "ImageNet" for k, _, _, _ in candidates))
    if required:
        raise InputValueError(where, expected=f"torchvision's pretrained {name} checkpoint in the torch hub cache",
                              got=f"no file at {looked}",
                              fix="copy the .pth file there, pass weights=<path>, or try weights='download'")
    return (_build_seeded(name), "random",
            f"random init (seed {RANDOM_SEED}): {failure}{kinds} weights not found in {looked}; {_GEOMETRY_NOTE}")


# --------------------------------------------------------------------------- summaries
def _as_chw(features: Tensor, where: str) -> Tensor:
    ok = isinstance(features, Tensor) and (features.dim() == 3 or (features.dim() == 4 and features.shape[0] == 1))
    if not ok:
        raise ShapeError(where, expected="one feature map Tensor[1, C, h, w] or Tensor[C, h, w]",
                         got=describe(features),
                         fix="pick one stage and one image, e.g. feats['C4'] or feats['C4'][i:i+1]")
    x = features[0] if features.dim() == 4 else features
    return x.detach().to("cpu", torch.float32)  # [C, h, w]


def pick_channel(features: Tensor, kind: str = "max_abs") -> int:
    """Index of the channel :func:`feature_summary` shows for ``"max_abs"`` or ``"top_variance"``.

    Example:
        >>> import torch
        >>> f = torch.zeros(1, 4, 2, 2); f[0, 2, 1, 1] = -5.0; f[0, 1] = 3.0
        >>> pick_channel(f, "max_abs"), pick_channel(f, "top_variance")
        (2, 2)
    """
    x = _as_chw(features, "pick_channel(features=...)")
    if kind == "max_abs":
        return int(x.abs().amax(dim=(1, 2)).argmax())
    if kind == "top_variance":
        return int(x.flatten(1).var(dim=1, unbiased=False).argmax())
    raise InputValueError("pick_channel(kind=...)", expected="'max_abs' or 'top_variance'", got=describe(kind),
                          fix="e.g. kind='max_abs'")


def feature_summary(features: Tensor, kind: str = "mean") -> np.ndarray:
    """A displayable 2-D view of a feature map.

    Kinds:
        - ``"mean"``: mean over channels, ``[h, w]`` float32.
        - ``"max_abs"``: the channel with the largest max |activation| (first on ties), ``[h, w]`` float32.
        - ``"top_variance"``: the channel with the largest spatial variance, ``[h, w]`` float32.
        - ``"pca"``: the top-3 principal components of the channels (pixels as samples, channels
          centred), each min-max scaled to 0..255, as ``[h, w, 3]`` uint8 RGB. Signs are fixed so the
          largest-magnitude loading of each component is positive; missing components are 0. Pixels with a
          NaN or inf channel are left out of the PCA and shown black (0, 0, 0).

    Args:
        features (Tensor[1, C, h, w] | Tensor[C, h, w]): one stage of :meth:`Backbone.features`.
        kind (str): one of :data:`SUMMARY_KINDS`.

    Returns:
        ndarray: ``[h, w]`` float32, or ``[h, w, 3]`` uint8 for ``"pca"``.

    Example:
        >>> import torch
        >>> f = torch.arange(8.0).view(1, 2, 2, 2)
        >>> feature_summary(f, "mean").tolist()
        [[2.0, 3.0], [4.0, 5.0]]
    """
    if kind not in SUMMARY_KINDS:
        raise InputValueError("feature_summary(kind=...)", expected=f"one of {', '.join(SUMMARY_KINDS)}",
                              got=describe(kind), fix="e.g. kind='mean'")
    x = _as_chw(features, "feature_summary(features=...)")  # [C, h, w]
    if kind == "mean":
        return x.mean(0).numpy()
    if kind in ("max_abs", "top_variance"):
        return x[pick_channel(x, kind)].numpy().copy()
    return _pca_rgb(x)


def _pca_rgb(x: Tensor) -> np.ndarray:
    c, h, w = x.shape
    data = x.reshape(c, h * w).T.double()  # [h*w, C]
    finite = torch.isfinite(data).all(1)  # [h*w]: pixels with a NaN / inf channel are left out, and shown black
    if not bool(finite.all()):
        rgb = np.zeros((h * w, 3), np.uint8)
        if bool(finite.any()):
            rgb[finite.numpy()] = _pca_rgb(x.reshape(c, h * w)[:, finite][:, :, None])[:, 0]
        return rgb.reshape(h, w, 3)
    data = data - data.mean(0, keepdim=True)
    cov = data.T @ data  # [C, C]
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    k = min(3, c)
    comps = evecs[:, -k:].flip(1)  # [C, k] largest first
    idx = comps.abs().argmax(0)  # [k]
    signs = torch.sign(comps[idx, torch.arange(k)])
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    proj = data @ comps  # [h*w, k]
    lo, hi = proj.amin(0), proj.amax(0)
    span = torch.where(hi - lo > 1e-12, hi - lo, torch.ones_like(hi))
    scaled = ((proj - lo) / span * 255.0).round().clamp(0, 255)
    scaled = torch.where((hi - lo > 1e-12)[None], scaled, torch.zeros_like(scaled))
    rgb = torch.zeros(h * w, 3, dtype=torch.float64)
    rgb[:, :k] = scaled
    return rgb.reshape(h, w, 3).numpy().astype(np.uint8)
