"""How a capture sees ROI pooling calls: patched functions and forwards, and a TorchFunctionMode.

Three mechanisms, installed together when the first capture of the process starts and removed when the
last one ends (a reference count under a lock, so nested captures and captures in several threads share
one installation):

1. **Functions, patched where they are looked up.** ``torchvision.ops.roi_align`` is imported by name into
   ``torchvision.ops.poolers``, ``torchvision.models.detection.roi_heads``, detectron2's layers and often
   the user's own modules, so patching ``torchvision.ops.roi_align`` alone misses most calls. Every module
   in ``sys.modules`` whose global ``roi_align`` / ``roi_pool`` / ``ps_roi_align`` / ``ps_roi_pool`` /
   ``crop_and_resize`` *is* the original function gets the wrapper; on exit each is put back, and so is
   every wrapper that a module imported during the capture picked up.
2. **Module forwards, patched on the class**: torchvision's ``RoIAlign``, ``RoIPool``,
   ``MultiScaleRoIAlign`` (every pooler of Faster / Mask / Keypoint R-CNN), ``roi_lab.MultiScaleRoIAlign``,
   detectron2's ``ROIPooler`` and mmcv's ``RoIAlign`` when importable, and torchvision's
   ``GeneralizedRCNNTransform`` (for the image size the boxes refer to).
3. **A TorchFunctionMode** for direct ``torch.ops.torchvision.roi_align / roi_pool / ps_roi_align /
   ps_roi_pool`` calls (and calls through an alias such as ``from torchvision.ops import roi_align as ra``,
   which the name scan of 1. cannot see). A TorchFunctionMode is chosen over a TorchDispatchMode because it
   sees the call with the arguments as passed, above autograd, and costs one Python call per torch
   function (about 800 per Faster R-CNN forward); a dispatch mode would see every aten op below autograd.
   The mode is thread-local: it is pushed by the outermost capture of a thread and popped when it ends.

The wrappers have the original's signature (its parameter names and defaults, so code that inspects
``__code__.co_varnames``, as mmcv does for torchvision's ``aligned``, takes the same path) and call the
original with the same arguments; a call is recorded only when a capture is active in the calling context
(a ContextVar: other threads, and code outside the ``with`` block, are not recorded) and no recorded call is
already in flight (the ``roi_align`` calls inside a recorded ``MultiScaleRoIAlign`` are one call).
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.util
import inspect
import math
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

# The captures active in the calling context, innermost last; and whether a recorded call is running.
ACTIVE: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("roi_lab_capture_active", default=())
_IN_FLIGHT: contextvars.ContextVar[bool] = contextvars.ContextVar("roi_lab_capture_in_flight", default=False)

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_WRAPPER_FILE = "<roi_lab.capture wrapper>"


# --------------------------------------------------------------------------------------------- raw records


@dataclass
class RawCall:
    """One intercepted call, before a capture files it: live tensors, copied boxes."""

    op: str
    where: str
    features: Any = None  # the live map (Tensor) or list of maps (multi-scale); copied only when kept
    boxes: Any = None  # the CPU copy, as passed: Tensor or list of Tensors
    box_format: str = "?"
    output_size: tuple[int, int] | None = None
    spatial_scale: float | None = None
    sampling_ratio: int | None = None
    aligned: bool | None = None
    box_indices: Tensor | None = None
    scales: list[float] | None = None
    level_names: list[str] | None = None
    levels: Tensor | None = None
    image_sizes: list[tuple[int, int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    explanation: dict[str, str] | None = None
    _features_cpu: Any = None

    def maps(self) -> list[Tensor]:
        f = self.features
        if isinstance(f, Tensor):
            return [f]
        if isinstance(f, (list, tuple)):
            return [t for t in f if isinstance(t, Tensor)]
        return []

    def features_nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self.maps())

    def features_copy(self) -> Any:
        """A CPU copy of the map(s), made once and shared by nested captures."""
        if self._features_cpu is None and self.maps():
            copies = [t.detach().to("cpu", copy=True) for t in self.maps()]
            self._features_cpu = copies[0] if isinstance(self.features, Tensor) else copies
        return self._features_cpu


@dataclass
class RawImages:
    """One GeneralizedRCNNTransform output: the padded batch the boxes of the next calls refer to."""

    where: str
    image_size: tuple[int, int]
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    mean: list[float] | None
    std: list[float] | None
    tensor: Tensor | None


# --------------------------------------------------------------------------------------------- helpers


def copy_boxes(boxes: Any) -> tuple[Any, str]:
    """Boxes as passed, on CPU (a copy, so later in-place edits do not change the record), and their form."""
    if isinstance(boxes, Tensor):
        copy = boxes.detach().to("cpu", copy=True)
        if copy.dim() == 2 and copy.shape[1] == 5:
            return copy, "rois [K,5]"
        return copy, "tensor [" + ", ".join(str(d) for d in copy.shape) + "]"
    if isinstance(boxes, (list, tuple)):
        out = []
        for b in boxes:
            b = getattr(b, "tensor", b)  # detectron2 Boxes
            if not isinstance(b, Tensor):
                try:
                    b = torch.as_tensor(b)
                except Exception:
                    b = None  # tensors and primitives only: the record must stay safe to save
            out.append(b.detach().to("cpu", copy=True) if isinstance(b, Tensor) else None)
        return out, "list"
    try:
        return torch.as_tensor(boxes).to("cpu", copy=True), type(boxes).__name__
    except Exception:
        return None, type(boxes).__name__


def _pair(size: Any) -> tuple[int, int] | None:
    try:
        if isinstance(size, int):
            return (size, size)
        if isinstance(size, Tensor):
            size = size.tolist()
        items = [int(s) for s in size]
        if len(items) == 1:
            return (items[0], items[0])
        return (items[0], items[1]) if len(items) == 2 else None
    except Exception:
        return None


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except Exception:
        return None


def _int(x: Any) -> int | None:
    try:
        return int(x)
    except Exception:
        return None


def _bool(x: Any) -> bool | None:
    return None if x is None else bool(x)


def _sizes(shapes: Any) -> list[tuple[int, int]] | None:
    try:
        return [(int(s[0]), int(s[1])) for s in shapes]
    except Exception:
        return None


def _primitive(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool)) or x is None else repr(x)[:80]


_SKIP_DIRS: list[str] = [_HERE]


@functools.lru_cache(maxsize=512)
def _short_path(path: str) -> str:
    """A file path for ``where``: relative to its sys.path entry (site-packages, the script's folder), else to
    the working directory, else as it is."""
    for base in sorted((p for p in sys.path if p), key=len, reverse=True):
        if path.startswith(base.rstrip(os.sep) + os.sep):
            return path[len(base.rstrip(os.sep)) + 1 :]
    try:
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel
    except ValueError:
        return path


def caller() -> str:
    """``module.qualname (file:line)`` of the code that called the op, past torch, the ops' own modules and us."""
    frame = sys._getframe(1)
    skip = tuple(_SKIP_DIRS)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(skip) or name.startswith(("<roi_lab.capture", "<frozen"))):
            break
        frame = frame.f_back
    if frame is None:
        return "?"
    module = frame.f_globals.get("__name__", "?")
    qualname = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
    return f"{module}.{qualname} ({_short_path(frame.f_code.co_filename)}:{frame.f_lineno})"


def _explain(exc: BaseException) -> tuple[str, dict[str, str] | None]:
    from roi_lab.explain import explain_error

    first = (str(exc).strip().splitlines() or [""])[0]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        found = explain_error(text)
    except Exception:  # pragma: no cover - the explainer never raises on text
        found = None
    return f"{type(exc).__name__}: {first}"[:500], found.to_dict() if found is not None else None


# --------------------------------------------------------------------------------------------- op specs


@dataclass(frozen=True)
class Spec:
    """How to read one op's arguments (``describe``) and, after it ran, its results (``finish``)."""

    op: str
    describe: Callable[[dict[str, Any]], RawCall] | None
    finish: Callable[[RawCall, dict[str, Any], Any], None] | None = None


def _one_map(
    op: str,
    features: Any,
    boxes: Any,
    output_size: Any,
    spatial_scale: Any,
    sampling_ratio: int | None = None,
    aligned: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> RawCall:
    """A call that pools one map: the boxes copied, the caller found, the parameters normalised."""
    copy, form = copy_boxes(boxes)
    return RawCall(
        op,
        caller(),
        features=features,
        boxes=copy,
        box_format=form,
        output_size=_pair(output_size),
        spatial_scale=_float(spatial_scale),
        sampling_ratio=sampling_ratio,
        aligned=aligned,
        extra=extra or {},
    )


def _given(a: dict[str, Any], key: str, cast: Callable[[Any], Any]) -> Any:
    return cast(a[key]) if key in a else None


def _single(op: str) -> Callable[[dict[str, Any]], RawCall]:
    """Functions ``op(input, boxes, output_size, spatial_scale, [sampling_ratio], [aligned], ...)``."""

    def describe(a: dict[str, Any]) -> RawCall:
        extra = {k: _primitive(a[k]) for k in ("mode",) if k in a}
        sampling, aligned = _given(a, "sampling_ratio", _int), _given(a, "aligned", _bool)
        return _one_map(
            op,
            a.get("input"),
            a.get("boxes"),
            a.get("output_size"),
            a.get("spatial_scale", 1.0),
            sampling,
            aligned,
            extra,
        )

    return describe


def _op_level(op: str) -> Callable[[dict[str, Any]], RawCall]:
    """``torch.ops.torchvision.<op>(input, rois, spatial_scale, pooled_height, pooled_width, ...)``."""

    def describe(a: dict[str, Any]) -> RawCall:
        size = (a.get("pooled_height"), a.get("pooled_width"))
        sampling, aligned = _given(a, "sampling_ratio", _int), _given(a, "aligned", _bool)
        return _one_map(op, a.get("input"), a.get("rois"), size, a.get("spatial_scale"), sampling, aligned)

    return describe


def _module(op: str, *, pool_mode: bool = False) -> Callable[[dict[str, Any]], RawCall]:
    """``Module.forward(self, input, rois)`` with the parameters on ``self`` (RoIAlign, RoIPool, mmcv RoIAlign)."""

    def describe(a: dict[str, Any]) -> RawCall:
        m = a["self"]
        extra = {}
        if pool_mode:
            extra = {k: _primitive(getattr(m, k, None)) for k in ("pool_mode", "use_torchvision")}
        sampling = _int(m.sampling_ratio) if hasattr(m, "sampling_ratio") else None
        return _one_map(
            op,
            a.get("input"),
            a.get("rois"),
            getattr(m, "output_size", None),
            getattr(m, "spatial_scale", None),
            sampling,
            _bool(getattr(m, "aligned", None)),
            extra,
        )

    return describe


def _crop_and_resize(a: dict[str, Any]) -> RawCall:
    boxes, form = copy_boxes(a.get("boxes"))
    if isinstance(boxes, Tensor) and boxes.dim() == 2 and boxes.shape[1] == 4:
        form = "boxes [K,4]"
    indices, _ = copy_boxes(a.get("box_indices"))
    return RawCall(
        "roi_lab.crop_and_resize",
        caller(),
        features=a.get("image"),
        boxes=boxes,
        box_format=form,
        box_indices=indices if isinstance(indices, Tensor) else None,
        output_size=_pair(a.get("crop_size")),
        extra={"method": _primitive(a.get("method")), "extrapolation_value": _primitive(a.get("extrapolation_value"))},
    )


def _multi_scale(op: str) -> Callable[[dict[str, Any]], RawCall]:
    """``MultiScaleRoIAlign.forward(self, x, boxes, image_shapes)`` of torchvision and roi_lab."""

    def describe(a: dict[str, Any]) -> RawCall:
        m, x = a["self"], a.get("x")
        if isinstance(x, dict):
            names = list(getattr(m, "featmap_names", None) or x)
            picked = [(str(k), v) for k, v in x.items() if k in names]  # dict order, as both pool
        else:
            picked = [(str(i), v) for i, v in enumerate(x or [])]
        boxes, form = copy_boxes(a.get("boxes"))
        return RawCall(
            op,
            caller(),
            features=[v for _, v in picked],
            boxes=boxes,
            box_format=form,
            output_size=_pair(getattr(m, "output_size", None)),
            sampling_ratio=_int(getattr(m, "sampling_ratio", None)),
            aligned=False,  # both poolers use roi_align's legacy aligned=False
            level_names=[k for k, _ in picked],
            image_sizes=_sizes(a.get("image_shapes")),
            extra={
                "canonical_scale": _primitive(getattr(m, "canonical_scale", None)),
                "canonical_level": _primitive(getattr(m, "canonical_level", None)),
            },
        )

    return describe


def _levels_from(boxes: Any, k_min: int, k_max: int, convention: str, scale: float, level: int) -> Tensor:
    from roi_lab.ops.fpn import assign_fpn_levels

    flat = torch.cat([b.reshape(-1, 4) for b in boxes]) if boxes else torch.zeros(0, 4)
    return (
        assign_fpn_levels(
            flat, k_min=k_min, k_max=k_max, convention=convention, canonical_scale=scale, canonical_level=level
        )
        - k_min
    )


def _finish_torchvision_pooler(raw: RawCall, a: dict[str, Any], result: Any) -> None:
    m = a["self"]
    raw.scales = [float(s) for s in m.scales] if m.scales is not None else None
    boxes = raw.boxes if isinstance(raw.boxes, list) else []
    if raw.scales and len(raw.scales) == 1:
        raw.levels = torch.zeros(sum(len(b) for b in boxes), dtype=torch.int64)
    elif raw.scales and getattr(m, "map_levels", None) is not None:
        raw.levels = m.map_levels(boxes).to("cpu", torch.int64)  # torchvision's own LevelMapper, on the copies


def _finish_roi_lab_pooler(raw: RawCall, a: dict[str, Any], result: Any) -> None:
    m = a["self"]
    raw.scales = [float(s) for s in m.scales] if m.scales is not None else None
    boxes = raw.boxes if isinstance(raw.boxes, list) else []
    if raw.scales:
        k_min, k_max = int(-math.log2(raw.scales[0])), int(-math.log2(raw.scales[-1]))
        raw.levels = _levels_from(boxes, k_min, k_max, "torchvision", m.canonical_scale, m.canonical_level)


def _detectron2_pooler(a: dict[str, Any]) -> RawCall:
    m = a["self"]
    poolers = list(getattr(m, "level_poolers", []))
    first = poolers[0] if poolers else None
    boxes, _ = copy_boxes(list(a.get("box_lists") or []))
    x = a.get("x")
    k_min = int(getattr(m, "min_level", 0))
    return RawCall(
        "detectron2.ROIPooler",
        caller(),
        features=list(x) if isinstance(x, (list, tuple)) else x,
        boxes=boxes,
        box_format="list",
        output_size=_pair(getattr(m, "output_size", None)),
        sampling_ratio=_int(getattr(first, "sampling_ratio", None)) if hasattr(first, "sampling_ratio") else None,
        aligned=_bool(getattr(first, "aligned", None)) if hasattr(first, "aligned") else None,
        scales=[float(p.spatial_scale) for p in poolers],
        level_names=[f"p{k_min + i}" for i in range(len(poolers))],
        extra={
            "pooler": type(first).__name__ if first is not None else None,
            "canonical_box_size": _primitive(getattr(m, "canonical_box_size", None)),
            "canonical_level": _primitive(getattr(m, "canonical_level", None)),
        },
    )


def _finish_detectron2_pooler(raw: RawCall, a: dict[str, Any], result: Any) -> None:
    m = a["self"]
    boxes = raw.boxes if isinstance(raw.boxes, list) else []
    if len(raw.scales or []) <= 1:
        raw.levels = torch.zeros(sum(len(b) for b in boxes), dtype=torch.int64)
        return
    assign = getattr(sys.modules.get(type(m).__module__), "assign_boxes_to_levels", None)
    args = (m.min_level, m.max_level, m.canonical_box_size, m.canonical_level)
    if assign is not None:
        raw.levels = assign(a["box_lists"], *args).to("cpu", torch.int64)  # detectron2's own assignment
    else:
        raw.levels = _levels_from(boxes, m.min_level, m.max_level, "detectron2", *args[2:])


# --------------------------------------------------------------------------------------------- calling


def _deliver(raw: RawCall | RawImages, captures: tuple[Any, ...]) -> None:
    for cap in captures:
        try:
            cap._file(raw)
        except Exception as exc:  # pragma: no cover - filing never breaks the user's model
            warnings.warn(f"roi_lab.capture could not record a {getattr(raw, 'op', 'call')}: {exc}", stacklevel=3)


def _call(spec: Spec, original: Callable[..., Any], names: list[str], args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run ``original(*args, **kwargs)``; record it for the active captures first when one is active."""
    if torch.compiler.is_compiling():  # torch.compile traces through: compiled regions are not recorded
        return original(*args, **kwargs)
    captures = ACTIVE.get()
    if not captures or _IN_FLIGHT.get():
        return original(*args, **kwargs)
    bound = dict(zip(names, args, strict=False))  # *args of a generated wrapper may run longer
    bound.update(kwargs)
    try:
        raw = spec.describe(bound)  # boxes are copied before the op could edit them in place
    except Exception as exc:
        raw = RawCall(spec.op, "?", extra={"note": f"could not read the arguments: {type(exc).__name__}: {exc}"})
    token = _IN_FLIGHT.set(True)
    try:
        result = original(*args, **kwargs)
    except Exception as exc:
        raw.error, raw.explanation = _explain(exc)
        _deliver(raw, captures)
        raise
    finally:
        _IN_FLIGHT.reset(token)
    if spec.finish is not None:
        try:
            spec.finish(raw, bound, result)
        except Exception as exc:
            raw.extra["note"] = f"could not read the levels: {type(exc).__name__}: {exc}"
    _deliver(raw, captures)
    return result


def _transform_call(spec: Spec, original: Callable[..., Any], names: list[str], args: tuple, kwargs: dict) -> Any:
    result = original(*args, **kwargs)
    if torch.compiler.is_compiling():
        return result
    captures = ACTIVE.get()
    if captures:
        try:
            bound = dict(zip(names, args, strict=False))  # *args of a generated wrapper may run longer
            bound.update(kwargs)
            m, image_list = bound["self"], result[0]
            raw = RawImages(
                caller(),
                image_size=(int(image_list.tensors.shape[-2]), int(image_list.tensors.shape[-1])),
                image_sizes=_sizes(image_list.image_sizes) or [],
                original_sizes=[(int(i.shape[-2]), int(i.shape[-1])) for i in bound.get("images") or []],
                mean=[float(v) for v in m.image_mean] if getattr(m, "image_mean", None) is not None else None,
                std=[float(v) for v in m.image_std] if getattr(m, "image_std", None) is not None else None,
                tensor=image_list.tensors,
            )
        except Exception:
            return result  # not the ImageList torchvision returns: nothing to learn from it
        _deliver(raw, captures)
    return result


def forwarder(original: Callable[..., Any], spec: Spec, call: Callable[..., Any] = _call) -> Callable[..., Any]:
    """A function with ``original``'s signature that runs ``call(spec, original, names, args, kwargs)``.

    Generated from the signature (not ``*args, **kwargs``), so its ``__code__.co_varnames`` and defaults are
    the original's, and the bound arguments need no ``inspect.bind`` per call.
    """
    sig = inspect.signature(original)
    ns: dict[str, Any] = {"_roi_lab_call": call, "_roi_lab_spec": spec, "_roi_lab_original": original}
    params, pos, kwonly, star, starstar, saw_posonly = [], [], [], None, None, False
    for i, p in enumerate(sig.parameters.values()):
        default = ""
        if p.default is not inspect.Parameter.empty:
            ns[f"_roi_lab_d{i}"] = p.default
            default = f"=_roi_lab_d{i}"
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            params.append(p.name + default)
            pos.append(p.name)
            saw_posonly = True
            continue
        if saw_posonly:
            params.append("/")
            saw_posonly = False
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            params.append(p.name + default)
            pos.append(p.name)
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            params.append("*" + p.name)
            star = p.name
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            if star is None and "*" not in params:
                params.append("*")
            params.append(p.name + default)
            kwonly.append(p.name)
        else:
            params.append("**" + p.name)
            starstar = p.name
    if saw_posonly:
        params.append("/")
    ns["_roi_lab_names"] = pos
    args = "(" + "".join(f"{n}, " for n in pos) + ")" + (f" + tuple({star})" if star else "")
    kwargs = "{" + ", ".join(f"{n!r}: {n}" for n in kwonly) + "}" + (f" | {starstar}" if starstar else "")
    name = original.__name__ if original.__name__.isidentifier() else "wrapper"
    source = (
        f"def {name}({', '.join(params)}):\n"
        f"    return _roi_lab_call(_roi_lab_spec, _roi_lab_original, _roi_lab_names, {args}, {kwargs})\n"
    )
    exec(compile(source, _WRAPPER_FILE, "exec"), ns)  # source built from the signature only
    wrapper = ns[name]
    functools.update_wrapper(wrapper, original)
    wrapper._roi_lab_original = original  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------------------------- the mode


_OP_SPECS: dict[Any, tuple[Spec, list[str]]] = {}


class _OpMode(TorchFunctionMode):
    """Records direct ``torch.ops.torchvision.*`` pooling calls; every other torch call passes through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.compiler.is_compiling():
            return func(*args, **kwargs)
        try:
            entry = _OP_SPECS.get(func)
        except TypeError:  # an unhashable callable
            entry = None
        if entry is None:
            return func(*args, **kwargs)
        spec, names = entry
        return _call(spec, func, names, tuple(args), kwargs)


# --------------------------------------------------------------------------------------------- installing


_FUNCTION_NAMES = ("roi_align", "roi_pool", "ps_roi_align", "ps_roi_pool", "crop_and_resize")
_NAME_SET = frozenset(_FUNCTION_NAMES)
_warned: set[str] = set()


def _optional(module: str) -> Any:
    """``module`` imported when its package is importable; None otherwise (a broken install warns once)."""
    if module in sys.modules:
        return sys.modules[module]
    try:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return None
        return importlib.import_module(module)
    except Exception as exc:
        if module not in _warned:
            _warned.add(module)
            warnings.warn(
                f"roi_lab.capture: {module} is installed but could not be imported ({type(exc).__name__}: {exc}); "
                "its poolers are recorded only through the torchvision ops they call",
                stacklevel=4,
            )
        return None


def _targets() -> tuple[list[tuple[Callable, Spec]], list[tuple[type, Spec, Callable]]]:
    """(functions to patch wherever they are bound, classes whose forward to patch)."""
    # import_module, not `import a.b as m`: torchvision.ops.roi_align (and roi_lab.ops.roi_align) name both a
    # submodule and the function its package re-exports, and `import ... as` would bind the function
    mod = importlib.import_module
    tv_transform = mod("torchvision.models.detection.transform")
    tv_poolers, tv_align = mod("torchvision.ops.poolers"), mod("torchvision.ops.roi_align")
    names = ("roi_pool", "ps_roi_align", "ps_roi_pool")
    tv_pool, tv_ps_align, tv_ps_pool = (mod(f"torchvision.ops.{m}") for m in names)
    rl_align, rl_crop, rl_fpn = (mod(f"roi_lab.ops.{m}") for m in ("roi_align", "crop_and_resize", "fpn"))

    functions = [
        (tv_align.roi_align, Spec("torchvision.ops.roi_align", _single("torchvision.ops.roi_align"))),
        (tv_pool.roi_pool, Spec("torchvision.ops.roi_pool", _single("torchvision.ops.roi_pool"))),
        (
            tv_ps_align.ps_roi_align,
            Spec("torchvision.ops.ps_roi_align", _single("torchvision.ops.ps_roi_align")),
        ),
        (
            tv_ps_pool.ps_roi_pool,
            Spec("torchvision.ops.ps_roi_pool", _single("torchvision.ops.ps_roi_pool")),
        ),
        (rl_align.roi_align, Spec("roi_lab.roi_align", _single("roi_lab.roi_align"))),
        (rl_crop.crop_and_resize, Spec("roi_lab.crop_and_resize", _crop_and_resize)),
    ]
    classes = [
        (tv_align.RoIAlign, Spec("torchvision.ops.RoIAlign", _module("torchvision.ops.RoIAlign")), _call),
        (tv_pool.RoIPool, Spec("torchvision.ops.RoIPool", _module("torchvision.ops.RoIPool")), _call),
        (
            tv_poolers.MultiScaleRoIAlign,
            Spec(
                "torchvision.ops.MultiScaleRoIAlign",
                _multi_scale("torchvision.ops.MultiScaleRoIAlign"),
                _finish_torchvision_pooler,
            ),
            _call,
        ),
        (
            rl_fpn.MultiScaleRoIAlign,
            Spec("roi_lab.MultiScaleRoIAlign", _multi_scale("roi_lab.MultiScaleRoIAlign"), _finish_roi_lab_pooler),
            _call,
        ),
        (
            tv_transform.GeneralizedRCNNTransform,
            Spec("GeneralizedRCNNTransform", describe=None),  # _transform_call reads its output instead
            _transform_call,
        ),
    ]
    d2 = _optional("detectron2.modeling.poolers")
    if d2 is not None and hasattr(d2, "ROIPooler"):
        classes.append(
            (d2.ROIPooler, Spec("detectron2.ROIPooler", _detectron2_pooler, _finish_detectron2_pooler), _call)
        )
    mmcv = _optional("mmcv.ops.roi_align")
    if mmcv is not None and hasattr(mmcv, "RoIAlign"):
        classes.append((mmcv.RoIAlign, Spec("mmcv.ops.RoIAlign", _module("mmcv.ops.RoIAlign", pool_mode=True)), _call))
    return functions, classes


def _skip_dirs() -> list[str]:
    """Frames in these files are not the caller: torch, the ops' own packages, this package."""
    import torchvision.ops

    import roi_lab.ops

    dirs = [_HERE, os.path.dirname(torch.__file__) + os.sep]
    dirs += [os.path.dirname(m.__file__) + os.sep for m in (torchvision.ops, roi_lab.ops)]
    for name in ("detectron2.layers", "mmcv.ops"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__file__", None):
            dirs.append(os.path.dirname(mod.__file__) + os.sep)
    return dirs


_WRAPPERS: dict[tuple[int, str], tuple[Any, Any]] = {}  # (id(original), op) -> (original, wrapper), per process


def _wrapper(original: Callable[..., Any], spec: Spec, call: Callable[..., Any] = _call) -> Callable[..., Any]:
    """:func:`forwarder`, generated once per original and op (compiling it is most of a capture's set-up)."""
    key = (id(original), spec.op)
    cached = _WRAPPERS.get(key)
    if cached is None or cached[0] is not original:
        cached = _WRAPPERS[key] = (original, forwarder(original, spec, call))
    return cached[1]


def _bindings(table: dict[int, tuple[Any, Any]]) -> list[tuple[Any, str, Any, Any]]:
    """(module, name, value, table[id(value)][1]) for every module global named in _FUNCTION_NAMES whose value is
    a key object of ``table`` ({id(obj): (obj, replacement)})."""
    found = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name in namespace.keys() & _NAME_SET:  # a C-level set intersection: most modules have none
            value = namespace[name]
            if id(value) in table and table[id(value)][0] is value:
                found.append((module, name, value, table[id(value)][1]))
    return found


class _Installation:
    """The process-wide patches, shared by every active capture (reference counted under a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.patched: list[tuple[Any, str, bool, Any, Any]] = []  # (owner, name, had_own, original, wrapper)
        self.wrappers: dict[int, tuple[Any, Any]] = {}  # id(wrapper) -> (wrapper, original)

    def acquire(self) -> None:
        with self.lock:
            if self.users == 0:
                try:
                    self._apply()
                except BaseException:
                    self._restore()
                    raise
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                self._restore()

    def _set(self, owner: Any, name: str, original: Any, wrapper: Any) -> None:
        had_own = name in vars(owner)
        setattr(owner, name, wrapper)
        self.patched.append((owner, name, had_own, original, wrapper))
        self.wrappers[id(wrapper)] = (wrapper, original)

    def _apply(self) -> None:
        import torchvision  # noqa: F401 - registers torch.ops.torchvision

        functions, classes = _targets()
        _SKIP_DIRS[:] = _skip_dirs()
        by_original = {id(fn): (fn, _wrapper(fn, spec)) for fn, spec in functions}
        for module, name, original, wrapper in _bindings(by_original):
            self._set(module, name, original, wrapper)
        for cls, spec, call in classes:
            original = cls.__dict__.get("forward") or cls.forward
            self._set(cls, "forward", original, _wrapper(original, spec, call))
        tv = torch.ops.torchvision
        for op in ("roi_align", "roi_pool", "ps_roi_align", "ps_roi_pool"):
            if not hasattr(tv, op):
                continue
            packet = getattr(tv, op)
            names = [a.name for a in packet.default._schema.arguments]
            spec = Spec(f"torch.ops.torchvision.{op}", _op_level(f"torch.ops.torchvision.{op}"))
            _OP_SPECS[packet] = _OP_SPECS[packet.default] = (spec, names)

    def _restore(self) -> None:
        _OP_SPECS.clear()
        for owner, name, had_own, original, wrapper in reversed(self.patched):
            if getattr(owner, name, None) is not wrapper:
                continue  # someone re-bound it during the capture: theirs now, leave it
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        # wrappers that modules imported during the capture picked up (`from torchvision.ops import roi_align`)
        if self.wrappers:
            for module, name, _, original in _bindings(self.wrappers):
                setattr(module, name, original)
        self.patched.clear()
        self.wrappers.clear()


INSTALLATION = _Installation()


def push_mode() -> TorchFunctionMode:
    mode = _OpMode()
    mode.__enter__()
    return mode


def pop_mode(mode: TorchFunctionMode) -> None:
    mode.__exit__(None, None, None)
