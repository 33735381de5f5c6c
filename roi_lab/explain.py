"""Explain the error messages that ROI pooling code prints, in words and with a fix.

:func:`explain_error` takes a pasted message or a whole traceback from torchvision (``roi_align``,
``roi_pool``, ``ps_roi_align``, ``MultiScaleRoIAlign``), TensorFlow ``crop_and_resize``, onnxruntime
``RoiAlign`` / ONNX shape inference, mmcv and detectron2 poolers, and returns an :class:`Explanation`
with one of the codes below, or ``None`` when the text is not an ROI-pooling input mistake.

Codes: MISSING_BATCH_INDEX, BOX_COLUMNS, BAD_RANK, EMPTY_BOXES, DTYPE_MISMATCH, DTYPE_UNSUPPORTED,
DEVICE_MISMATCH, BOX_INDICES_SHAPE, BATCH_INDEX_OUT_OF_RANGE, NON_FINITE, CROP_SIZE, FEATURE_PYRAMID,
API_RENAMED, PS_CHANNELS, INVERTED_BOX, EXPORT_MISMATCH (an ONNX export or runtime that computes something
else than the PyTorch pooler: torchvision's exporter warnings, onnxruntime's max-mode warning), NO_KERNEL (the
op has no kernel for this compiler at all, whatever the inputs: TensorFlow's XLA).

The knowledge is one table, :data:`RULES`: each :class:`Rule` is a regular expression with named
groups (so shapes, dtypes and devices may vary inside the message), the code, the framework, and
cause / fix templates filled from the groups. Generic messages (``torch.cat`` on an empty list,
"Dimension out of range", "Expected all tensors to be on the same device") only count when the
frames nearest the error are ROI pooling code, so an unrelated traceback returns ``None``.

Bounded: every repeat in a rule has a maximum (``{1,20}`` digits, not ``+``; ``.{0,300}?``, not
``.*?``; a test checks it), so matching time grows linearly with the text, and a text longer than
:data:`MAX_TEXT_CHARS` is read as its first 50,000 and last 150,000 characters (the explanation's
``note`` says so): the app reruns this on every interaction.

Example:
    >>> e = explain_error("AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]")
    >>> e.code, e.framework
    ('MISSING_BATCH_INDEX', 'torchvision')
    >>> print(explain_error("TypeError: Got an unexpected keyword argument 'box_ind'").fix)
    tf.image.crop_and_resize(image, boxes, box_indices=box_indices, crop_size=crop_size)
    >>> explain_error("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB") is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from roi_lab._display import ExplanationDisplay

__all__ = ["Explanation", "Rule", "RULES", "CODES", "MAX_TEXT_CHARS", "explain_error"]

#: the longest text explain_error reads whole; a longer one is read as its head and its tail (see ``note``).
MAX_TEXT_CHARS = 200_000
_HEAD_CHARS = 50_000  # of MAX_TEXT_CHARS: the start (a chained exception's first error), the rest from the end
_MATCHED_CHARS = 300  # the most of the matched line that Explanation.matched quotes

CODES: tuple[str, ...] = (
    "MISSING_BATCH_INDEX",
    "BOX_COLUMNS",
    "BAD_RANK",
    "EMPTY_BOXES",
    "DTYPE_MISMATCH",
    "DTYPE_UNSUPPORTED",
    "DEVICE_MISMATCH",
    "BOX_INDICES_SHAPE",
    "BATCH_INDEX_OUT_OF_RANGE",
    "NON_FINITE",
    "CROP_SIZE",
    "FEATURE_PYRAMID",
    "API_RENAMED",
    "PS_CHANNELS",
    "INVERTED_BOX",
    "EXPORT_MISMATCH",
    "NO_KERNEL",
)


@dataclass(frozen=True)
class Explanation(ExplanationDisplay):
    """What an error message means and how to fix it.

    Attributes:
        code (str): one of :data:`CODES`, e.g. ``"MISSING_BATCH_INDEX"``.
        framework (str): the library that raised it: ``"torchvision"``, ``"tensorflow"``,
            ``"onnxruntime"``, ``"onnx"``, ``"mmcv"``, ``"detectron2"`` or ``"torch"``.
        cause (str): the cause in words, with the numbers from the message.
        fix (str): how to fix it, usually a line of code.
        matched (str): the line of the text that matched (at most 300 characters of it, around the match).
        note (str): ``""``, or what was not read of a text longer than :data:`MAX_TEXT_CHARS`.
    """

    code: str
    framework: str
    cause: str
    fix: str
    matched: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        """The explanation as plain data, for JSON output and the app."""
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    """One known message: a pattern, its code and framework, and cause / fix templates.

    Attributes:
        pattern (str): regular expression searched in the error lines of the text (not in the
            traceback's frame and source lines); named groups fill the templates.
        code (str): the code it explains.
        framework (str): the library whose message this is; ``""`` to read it from the traceback
            (generic torch messages).
        cause (str): ``str.format`` template over the groups, :attr:`defaults` and :attr:`derive`.
        fix (str): template, like ``cause``.
        context (str | None): a pattern that must also occur in the frames nearest the error (or in
            the message) for the rule to apply: how generic messages are tied to ROI pooling.
        defaults (Mapping[str, str]): values for groups that did not take part in the match.
        derive (Callable | None): computes extra template fields from the groups.
    """

    pattern: str
    code: str
    framework: str
    cause: str
    fix: str
    context: str | None = None
    defaults: Mapping[str, str] = field(default_factory=dict)
    derive: Callable[[dict[str, str]], dict[str, str]] | None = None

    def compiled(self) -> re.Pattern[str]:
        return _compile(self.pattern)


_ROI = (
    r"roi_align|roi_pool|ps_roi|RoIAlign|RoIPool|ROIAlign|ROIPool|RoiAlign|MultiScaleRoIAlign|poolers\.py"
    r"|ROIPooler|crop_and_resize|CropAndResize|\brois\b"
)
# ONNX shape inference: "(op_type:RoiAlign, node name: ra): [ShapeInferenceError] <message>" (name and tag optional),
# onnxruntime's session creation: "Node (ra) Op (RoiAlign) [ShapeInferenceError] <message>"
_ONNX_NODE = (
    r"(?:\(op_type:RoiAlign(?:, node name: [^)\n]{0,200})?\):|Node \([^)\n]{0,200}\) Op \(RoiAlign\))"
    r"\s{0,4}(?:\[ShapeInferenceError\]\s{0,4})?"
)
_POOLER = r"poolers\.py|MultiScaleRoIAlign|_setup_scales|_infer_scale|_filter_input|convert_to_roi_format"


def _rank(shape: str) -> str:
    shape = shape.strip()
    return str(len(shape.split(","))) if shape else "0"


def _shape_rank(groups: dict[str, str]) -> dict[str, str]:
    return {"rank": _rank(groups.get("shape", ""))}


def _ort_input(groups: dict[str, str]) -> dict[str, str]:
    names = {"0": "X (the feature map)", "1": "rois", "2": "batch_indices"}
    return {"input": names.get(groups.get("index", ""), "input " + groups.get("index", "?"))}


def _tf_rank_input(groups: dict[str, str]) -> dict[str, str]:
    inputs = {"4": "the image / feature map", "2": "boxes", "1": "box_indices (or crop_size)"}
    return {"input": inputs.get(groups.get("expected", ""), "an input")}


def _old_tensor_types(groups: dict[str, str]) -> dict[str, str]:
    def short(name: str) -> str:
        return name.replace("torch.cuda.", "").replace("torch.", "").replace("Tensor", "").lower()

    return {"input_dtype": short(groups["input_type"]), "rois_dtype": short(groups["rois_type"])}


_TO_ROIS = "rois = torch.cat([batch_idx[:, None].to(boxes), boxes], dim=1)  # Tensor[K, 5]"

#: The table, most specific first: the first rule that matches explains the text.
RULES: tuple[Rule, ...] = (
    # --- torchvision: boxes structure ------------------------------------------------------------
    Rule(
        r"The shape of the tensor in the boxes list is not correct as List\[Tensor\[L, 4\]\]",
        "BOX_COLUMNS",
        "torchvision",
        "boxes was given as a list, so torchvision expects one Tensor[L, 4] (x1, y1, x2, y2) per image and "
        "adds the batch index itself; a tensor in your list does not have 4 columns (often the batch index "
        "was already added, making it [L, 5]).",
        "pass [boxes_img0, boxes_img1, ...] with 4 columns each, or one Tensor[K, 5] that is not wrapped in a "
        "list: roi_align(features, rois, output_size)",
    ),
    Rule(
        r"The boxes tensor shape is not correct as Tensor\[K, 5\]",
        "BOX_COLUMNS",
        "torchvision",
        "MultiScaleRoIAlign takes a list with one Tensor[L, 4] (x1, y1, x2, y2) per image and adds the batch "
        "index column itself; your boxes already had a 5th column, so the rois it built have 6 columns.",
        "drop the batch-index column: pooler(features, [b[:, 1:] for b in boxes], image_sizes)",
        context=_POOLER,
    ),
    Rule(
        r"The boxes tensor shape is not correct as Tensor\[K, 5\]|rois must have shape as Tensor\[K, 5\]",
        "MISSING_BATCH_INDEX",
        "torchvision",
        "a single boxes tensor must be Tensor[K, 5] (batch_index, x1, y1, x2, y2); yours is not. Usually it "
        "is Tensor[K, 4]: the batch-index column is missing (a [K, 6] tensor or a 3-D [N, K, 4] batch gives "
        "the same message).",
        f"{_TO_ROIS}, or pass a list with one Tensor[L, 4] per image: roi_align(features, [boxes], output_size)",
    ),
    Rule(
        r"boxes is expected to be a Tensor\[L, 5\] or a List\[Tensor\[K, 4\]\]|boxes shape is not correct",
        "BAD_RANK",
        "torchvision",
        "boxes is neither a torch.Tensor nor a list of tensors (a numpy array, for example), so torchvision "
        "cannot read its shape.",
        "boxes = torch.as_tensor(boxes, dtype=features.dtype, device=features.device)  # then [K, 5] or [boxes]",
    ),
    Rule(
        r"Dimension out of range \(expected to be in range of \[-1, 0\], but got 1\)",
        "BAD_RANK",
        "",
        "a 1-D tensor reached the ROI op where boxes must be 2-D: a single box needs the K axis, "
        "Tensor[1, 5] (or Tensor[1, 4] inside a list), not Tensor[5] or Tensor[4].",
        "boxes = boxes.reshape(-1, boxes.shape[-1])  # e.g. box[None] for one box",
        context=_ROI,
    ),
    Rule(
        r"Dimension out of range \(expected to be in range of \[-(?P<ndim>[123]), (?P<top>\d{1,20})\], but got "
        r"(?P<dim>\d{1,20})\)",
        "BAD_RANK",
        "",
        "the feature map has {ndim} dimension(s) but the ROI op reads dimension {dim}: it needs a 4-D batch "
        "(N, C, H, W).",
        "features = features.unsqueeze(0)  # [C, H, W] -> [1, C, H, W]; box batch indices are then 0",
        context=_ROI,
    ),
    Rule(
        r"too many indices for tensor of dimension (?P<ndim>\d{1,20})",
        "BAD_RANK",
        "",
        "a {ndim}-D boxes tensor reached the pooler, which indexes boxes as [L, 4] per image.",
        "give each image's boxes as a 2-D Tensor[L, 4]: [b.reshape(-1, 4) for b in boxes]",
        context=_POOLER,
    ),
    Rule(
        r"cat\(\): argument 'tensors' \(position 1\) must be tuple of Tensors, not Tensor",
        "BAD_RANK",
        "torchvision",
        "MultiScaleRoIAlign got one Tensor of boxes; it expects a list with one Tensor[L, 4] per image.",
        "pooler(features, [boxes], image_sizes)  # or list(boxes.split(counts)) for several images",
        context=_POOLER,
    ),
    # --- empty box lists -------------------------------------------------------------------------
    Rule(
        r"(?:torch\.)?cat\(\): expected a non-empty list of Tensors|stack expects a non-empty TensorList",
        "EMPTY_BOXES",
        "",
        "torch.cat was given an empty list while building the rois: no image in the batch has a box "
        "(or the list of per-image boxes is empty).",
        "skip the ROI op when there are no boxes, or pass an empty Tensor[0, 4] per image: "
        "[torch.zeros(0, 4, device=features.device)]",
        context=_ROI,
    ),
    # --- dtype -----------------------------------------------------------------------------------
    Rule(
        r"Expected tensor for argument #1 'input' to have the same type as tensor for argument #2 'rois'; "
        r"but type (?P<input_type>[\w.]{1,80}) does not equal (?P<rois_type>[\w.]{1,80})",
        "DTYPE_MISMATCH",
        "torchvision",
        "the feature map is {input_dtype} but the rois are {rois_dtype}; roi_align needs both in one dtype "
        "(typical under mixed precision, where the features become half).",
        "rois = rois.to(features.dtype)",
        derive=_old_tensor_types,
    ),
    Rule(
        r"input should have the same type as rois",
        "DTYPE_MISMATCH",
        "torchvision",
        "the feature map and the rois have different dtypes (e.g. float16 features under autocast with "
        "float32 boxes, or float64 boxes from numpy); torchvision's kernel needs them equal.",
        "rois = rois.to(features.dtype)  # or [b.to(features.dtype) for b in boxes]",
    ),
    Rule(  # TORCH_CHECK(cond) with no message of its own (c10/util/Exception.h prints the condition)
        r"Expected input\.scalar_type\(\) == rois\.scalar_type\(\) to be true, but got false",
        "DTYPE_MISMATCH",
        "",
        "the ROI kernel checks that the feature map and the rois have one dtype, and they do not (float16 "
        "features under autocast with float32 boxes, or float64 boxes from numpy); this build prints the "
        "check itself instead of a message.",
        "rois = rois.to(features.dtype)  # or [b.to(features.dtype) for b in boxes]",
    ),
    Rule(
        r"expected scalar type (?P<expected>\w{1,64}) but found (?P<found>\w{1,64})",
        "DTYPE_MISMATCH",
        "",
        "the ROI op expected {expected} and found {found}: the feature map and the boxes have different dtypes.",
        "rois = rois.to(features.dtype)",
        context=_ROI,
    ),
    Rule(
        r"\"(?P<kernel>ROIAlign_forward|ROIPool_forward)\" not implemented for '(?P<dtype>\w{1,64})'",
        "DTYPE_UNSUPPORTED",
        "detectron2",
        "the legacy {kernel} kernel (detectron2's _C or torchvision < 0.8) has no {dtype} version on this "
        "device, e.g. half precision on CPU.",
        "run the pooler in float32: pooler(features.float(), rois.float()), or use torchvision.ops.roi_align",
    ),
    Rule(
        r"\"(?P<kernel>\w{0,40}(?:roi|ROI)\w{0,40})\" not implemented for '(?P<dtype>\w{1,64})'",
        "DTYPE_UNSUPPORTED",
        "torchvision",
        "{kernel} has no {dtype} version: the feature map must be a floating type (float32/float64, float16 "
        "on CUDA), not {dtype}.",
        "features = features.float(); rois = rois.float()",
    ),
    # --- device ----------------------------------------------------------------------------------
    Rule(
        r"(?P<what>input|rois) should be on the same device as rois",
        "DEVICE_MISMATCH",
        "torchvision",
        "the feature map and the rois are on different devices (e.g. cuda:0 and cuda:1).",
        "rois = rois.to(features.device)",
    ),
    Rule(
        r"(?P<what>rois|input|grad) must be a (?P<device>CUDA|CPU) tensor",
        "DEVICE_MISMATCH",
        "torchvision",
        "the op runs on {device} (where the feature map is) but {what} is not a {device} tensor: the "
        "feature map and the boxes are on different devices.",
        "rois = rois.to(features.device)",
        context=_ROI,
    ),
    Rule(
        r"(?P<what>rois|input)\.device\(\)\.is_cpu\(\) (?:INTERNAL )?ASSERT FAILED",
        "DEVICE_MISMATCH",
        "torchvision",
        "the CPU kernel ran because the feature map is on the CPU, but {what} is on a GPU (or the other way "
        "round): the feature map and the boxes are on different devices.",
        "rois = rois.to(features.device)",
    ),
    Rule(
        r"Expected all tensors to be on the same device, but found at least two devices, (?P<a>[\w:]{1,40}) and "
        r"(?P<b>[\w:]{1,40})",
        "DEVICE_MISMATCH",
        "",
        "the ROI op got tensors on {a} and on {b}: the feature map and the boxes (or the batch indices) "
        "must be on one device.",
        "rois = rois.to(features.device)",
        context=_ROI,
    ),
    # --- non-finite ------------------------------------------------------------------------------
    Rule(
        r"cannot create std::vector larger than max_size\(\)",
        "NON_FINITE",
        "torchvision",
        "a box coordinate is NaN or inf: with sampling_ratio <= 0 roi_align sizes its sample grid from the "
        "box size, which is then NaN, and the allocation fails (it can also segfault).",
        "assert torch.isfinite(rois).all(); or drop bad rows: rois = rois[torch.isfinite(rois).all(1)]",
        context=_ROI,
    ),
    # --- feature pyramids (torchvision MultiScaleRoIAlign, detectron2 ROIPooler) -------------------
    Rule(
        r"images list should not be empty",
        "FEATURE_PYRAMID",
        "torchvision",
        "MultiScaleRoIAlign got an empty image_shapes list; it needs the (H, W) of each input image to work "
        "out the scale of each feature level.",
        "pooler(features, boxes, image_shapes=[(H, W)] * len(boxes))",
    ),
    Rule(
        r"IndexError: list index out of range",
        "FEATURE_PYRAMID",
        "torchvision",
        "none of the feature maps matched MultiScaleRoIAlign's featmap_names, so it found no level to pool "
        "from (the names must be the keys of the features dict, as strings, e.g. '0', not 0).",
        "MultiScaleRoIAlign(featmap_names=list(features.keys()), output_size=7, sampling_ratio=2)",
        context=r"_setup_scales|_infer_scale|scales\[0\]",
    ),
    Rule(
        r"'list' object has no attribute 'items'",
        "FEATURE_PYRAMID",
        "torchvision",
        "MultiScaleRoIAlign takes the feature maps as a dict {{name: Tensor[N, C, H, W]}}, not a list.",
        "pooler(OrderedDict((str(i), f) for i, f in enumerate(features)), boxes, image_sizes)",
        context=_POOLER,
    ),
    Rule(
        r"Arguments to pooler must be lists",
        "FEATURE_PYRAMID",
        "detectron2",
        "detectron2's ROIPooler takes a list of feature maps (one per level, in the pooler's order) and a "
        "list of Boxes (one per image); it got something else, e.g. the features dict or one Boxes.",
        "pooler([features[f] for f in in_features], [instances.proposal_boxes for instances in proposals])",
    ),
    Rule(
        r"unequal value, num_level_assignments=(?P<levels>\d{1,20}), but x is list of (?P<got>\d{1,20}) Tensors",
        "FEATURE_PYRAMID",
        "detectron2",
        "the ROIPooler was built for {levels} feature levels (one per scale) but got {got} feature maps.",
        "pass one feature map per scale: pooler([features[f] for f in in_features], boxes), with "
        "scales=[1 / stride for each f in in_features]",
    ),
    Rule(
        r"Sizes of input featuremaps do not form a pyramid|Featuremap stride is not power of 2",
        "FEATURE_PYRAMID",
        "detectron2",
        "the pooler scales must be 1/stride with power-of-2 strides, one per consecutive level (e.g. 1/4, 1/8, "
        "1/16, 1/32); yours skip a level or use a stride that is not a power of 2.",
        "ROIPooler(output_size, scales=[1 / 4, 1 / 8, 1 / 16, 1 / 32], sampling_ratio=0, pooler_type='ROIAlignV2')",
    ),
    Rule(
        r"unequal value, x\[0\] batch dim 0 is (?P<batch>\d{1,20}), but box_list has length (?P<lists>\d{1,20})",
        "BOX_INDICES_SHAPE",
        "detectron2",
        "the feature batch holds {batch} images but {lists} box lists were given; detectron2 assigns the "
        "i-th Boxes to image i, so it needs exactly one Boxes per image.",
        "pooler(features, [Boxes(b) for b in boxes_per_image])  # len == features[0].shape[0]",
    ),
    # --- mmcv ------------------------------------------------------------------------------------
    Rule(
        r"RoI must be \(idx, x1, y1, x2, y2\)!?",
        "MISSING_BATCH_INDEX",
        "mmcv",
        "mmcv's RoIAlign takes rois as Tensor[K, 5] (batch_index, x1, y1, x2, y2); yours do not have 5 "
        "columns, usually [K, 4] boxes without the batch index.",
        "rois = mmdet.structures.bbox.bbox2roi([boxes])  # or " + _TO_ROIS,
    ),
    # --- onnxruntime RoiAlign --------------------------------------------------------------------
    Rule(
        r"Second dimension for rois should be exactly 4",
        "BOX_COLUMNS",
        "onnxruntime",
        "ONNX RoiAlign takes rois as [K, 4] (x1, y1, x2, y2) and the batch index in a separate "
        "batch_indices input; your rois have another number of columns (torchvision-style [K, 5]?).",
        "feed {{'rois': rois[:, 1:], 'batch_indices': rois[:, 0].astype(np.int64)}}",
    ),
    Rule(
        r"Got invalid dimensions for input: (?P<name>\w{0,32}rois?\w{0,32}|\w{0,32}box\w{0,32}) "
        r"for the following indices\s{1,20}"
        r"index: (?P<axis>\d{1,20}) Got: (?P<got>\d{1,20}) Expected: (?P<expected>\d{1,20})",
        "BOX_COLUMNS",
        "onnxruntime",
        "the model declares {name} with {expected} on axis {axis}, your array has {got}: ONNX RoiAlign takes "
        "[K, 4] boxes and the batch index in a separate batch_indices input.",
        "feed {name}[:, 1:] and batch_indices = {name}[:, 0].astype(np.int64) when you have [K, 5] rois",
    ),
    Rule(
        r"Number of dimensions for rois should be exactly 2",
        "BAD_RANK",
        "onnxruntime",
        "ONNX RoiAlign takes rois as a 2-D [K, 4] array; yours has another rank (a batch axis too many?).",
        "rois = rois.reshape(-1, 4); batch_indices to match",
    ),
    Rule(
        r"First dimension \(num_rois\) of batch_indices and rois don't match|"
        r"Number of dimensions for batch indices should be exactly 1",
        "BOX_INDICES_SHAPE",
        "onnxruntime",
        "batch_indices must be a 1-D int64 array with one entry per roi, [K]; yours does not match rois [K, 4].",
        "batch_indices = np.zeros(len(rois), np.int64)  # image index of each roi",
    ),
    Rule(
        r"batch_indices value (?P<value>-?\d{1,20}) at index (?P<index>\d{1,20}) is out of range "
        r"\[0, (?P<batch>\d{1,20})\)",
        "BATCH_INDEX_OUT_OF_RANGE",
        "onnxruntime",
        "roi {index} points at image {value}, but the feature batch has {batch} image(s): valid indices are 0..{last}.",
        "check how batch_indices are built; every value must be in [0, {batch})",
        derive=lambda g: {"last": str(int(g["batch"]) - 1)},
    ),
    Rule(
        r"All 'rois' values must be finite",
        "NON_FINITE",
        "onnxruntime",
        "some rois coordinates are NaN or inf.",
        "keep = np.isfinite(rois).all(1); rois, batch_indices = rois[keep], batch_indices[keep]",
    ),
    Rule(
        r"Type parameter \(T1\) of Optype \(RoiAlign\) bound to different types \(tensor\((?P<a>\w{1,64})\) and "
        r"tensor\((?P<b>\w{1,64})\)",
        "DTYPE_MISMATCH",
        "onnxruntime",
        "RoiAlign's X and rois must share one float type; the model declares {a} and {b}.",
        "declare (or cast) rois with the feature map's type, e.g. a Cast node to {a}",
    ),
    Rule(
        r"Type 'tensor\((?P<dtype>\w{1,64})\)' of input parameter \((?P<name>\w{1,64})\) of operator \(RoiAlign\)",
        "DTYPE_UNSUPPORTED",
        "onnxruntime",
        "RoiAlign does not accept {name} as {dtype}: X and rois must be float16/float/double and batch_indices int64.",
        "declare {name} with the right type (batch_indices: TensorProto.INT64; X, rois: TensorProto.FLOAT)",
    ),
    Rule(
        r"Unexpected input data type\. Actual: \(tensor\((?P<actual>\w{1,64})\)\) , "
        r"expected: \(tensor\((?P<expected>\w{1,64})\)\)",
        "DTYPE_MISMATCH",
        "onnxruntime",
        "an input of the RoiAlign model was fed as {actual}, the model expects {expected}.",
        "cast before feeding, e.g. arr.astype(np.{expected_np})",
        context=_ROI + r"|batch_indices",
        derive=lambda g: {"expected_np": {"float": "float32", "double": "float64"}.get(g["expected"], g["expected"])},
    ),
    # --- ONNX shape inference --------------------------------------------------------------------
    Rule(
        _ONNX_NODE + r"Input 2 expected to have rank 1 but has rank (?P<got>\d{1,20})",
        "BOX_INDICES_SHAPE",
        "",  # onnx, or onnxruntime when its session ran the shape inference
        "batch_indices must be 1-D [K]; the model declares it with rank {got}.",
        "declare batch_indices as helper.make_tensor_value_info('batch_indices', TensorProto.INT64, ['K'])",
    ),
    Rule(
        _ONNX_NODE + r"Input (?P<index>[01]) expected to have rank (?P<expected>\d{1,20}) but has rank "
        r"(?P<got>\d{1,20})",
        "BAD_RANK",
        "",  # onnx, or onnxruntime when its session ran the shape inference
        "RoiAlign input {input} must have rank {expected}; the model gives it rank {got}.",
        "X is [N, C, H, W] and rois [K, 4]: fix the declared shapes (or add Unsqueeze/Reshape before RoiAlign)",
        derive=_ort_input,
    ),
    Rule(
        _ONNX_NODE + r"Dimension mismatch in unification between (?P<a>\d{1,20}) and (?P<b>\d{1,20})",
        "BOX_INDICES_SHAPE",
        "",  # onnx, or onnxruntime when its session ran the shape inference
        "rois and batch_indices must have the same number of rows K; the model declares {a} and {b}.",
        "declare both with the same first dimension, e.g. 'K' for rois ['K', 4] and batch_indices ['K']",
    ),
    Rule(
        _ONNX_NODE + r"(?P<name>rois|X|batch_indices) has inconsistent type "
        r"tensor\((?P<dtype>\w{1,64})\)",
        "DTYPE_MISMATCH",
        "",  # onnx, or onnxruntime when its session ran the shape inference
        "{name} is declared as {dtype}, which does not match the other RoiAlign inputs (X and rois share one "
        "float type; batch_indices is int64).",
        "declare {name} with the type of X (or int64 for batch_indices)",
    ),
    # --- TensorFlow crop_and_resize (eager and graph messages) ---------------------------------------
    Rule(
        r"boxes must be 2-D,? got:? \[(?P<shape>[\d, ]{0,80})\]",
        "BAD_RANK",
        "tensorflow",
        "crop_and_resize takes boxes as a 2-D [num_boxes, 4] tensor; yours has shape [{shape}] (rank {rank}).",
        "boxes = tf.reshape(boxes, [-1, 4])  # and one box_indices entry per row",
        derive=_shape_rank,
    ),
    Rule(
        r"boxes must have 4 columns"
        r"|Dimension must be 4 but is (?P<got>\d{1,20}) for '\{\{node [^}]{0,300}CropAndResize",
        "BOX_COLUMNS",
        "tensorflow",
        "crop_and_resize takes boxes as [num_boxes, 4] normalized (y1, x1, y2, x2) and the image index in "
        "box_indices; your boxes have {got} columns (a torchvision-style batch column?).",
        "tf.image.crop_and_resize(image, rois[:, 1:], box_indices=tf.cast(rois[:, 0], tf.int32), crop_size=...)",
        defaults={"got": "another number of"},
    ),
    Rule(
        r"input image must be 4-D\s{0,20}\[(?P<shape>[\d, ]{0,80})\]",
        "BAD_RANK",
        "tensorflow",
        "crop_and_resize takes a 4-D image batch [batch, height, width, channels]; yours has shape [{shape}] "
        "(rank {rank}).",
        "image = image[None]  # [H, W, C] -> [1, H, W, C]; box_indices are then 0",
        derive=_shape_rank,
    ),
    Rule(
        r"Shape must be rank (?P<expected>[124]) but is rank (?P<got>\d{1,20}) for '\{\{node [^}]{0,300}CropAndResize",
        "BAD_RANK",
        "tensorflow",
        "{input} must have rank {expected} for CropAndResize; it has rank {got}.",
        "image [batch, H, W, C], boxes [num_boxes, 4], box_indices [num_boxes], crop_size [2]",
        derive=_tf_rank_input,
    ),
    Rule(
        r"box_index has incompatible shape|box_ind(?:ices|ex)? must be rank 1 but is shape \[(?P<shape>[\d, ]{0,80})\]"
        r"|Dimensions must be equal, but are (?P<a>\d{1,20}) and (?P<b>\d{1,20}) "
        r"for '\{\{node [^}]{0,300}CropAndResize",
        "BOX_INDICES_SHAPE",
        "tensorflow",
        "box_indices must be a 1-D int32 tensor with one image index per box, [num_boxes]; yours does not match boxes.",
        "box_indices = tf.zeros([tf.shape(boxes)[0]], tf.int32)  # image index of each box",
    ),
    Rule(
        r"box_ind(?:ex|ices)? has values outside \[0, batch_size\)",
        "BATCH_INDEX_OUT_OF_RANGE",
        "tensorflow",
        "a box_indices value is negative or >= the number of images in the batch.",
        "tf.debugging.assert_less(box_indices, tf.shape(image)[0]); build the indices per image in the batch",
    ),
    Rule(
        r"crop dimensions must be positive",
        "CROP_SIZE",
        "tensorflow",
        "crop_size has a zero or negative entry; it must be two positive ints [crop_height, crop_width].",
        "crop_size=[7, 7]",
    ),
    Rule(
        r"crop_size must have two elements\s{0,20}\[(?P<n>\d{1,20})\]",
        "CROP_SIZE",
        "tensorflow",
        "crop_size has {n} elements; it must be exactly two, [crop_height, crop_width].",
        "crop_size=[7, 7]",
    ),
    Rule(
        r"crop_size must be 1-D\s{0,20}\[(?P<shape>[\d, ]{0,80})\]",
        "CROP_SIZE",
        "tensorflow",
        "crop_size has shape [{shape}] (rank {rank}); it must be a 1-D pair [crop_height, crop_width], "
        "not a single int.",
        "crop_size=[7, 7]  # not crop_size=7",
        derive=_shape_rank,
    ),
    Rule(
        r"Boxes contains at least one element that is not finite",
        "NON_FINITE",
        "tensorflow",
        "some box coordinates are NaN or inf.",
        "keep = tf.reduce_all(tf.math.is_finite(boxes), 1); boxes = tf.boolean_mask(boxes, keep)",
    ),
    Rule(
        r"Input '(?P<name>box_ind|boxes|crop_size)' of 'CropAndResize' Op has type (?P<got>\w{1,64}) that does not "
        r"match expected type of (?P<expected>\w{1,64})",
        "DTYPE_MISMATCH",
        "tensorflow",
        "CropAndResize's {name} must be {expected}, got {got}.",
        "tf.cast({name}, tf.{expected})",
    ),
    Rule(
        r"Tensor conversion requested dtype (?P<expected>\w{1,64}) for Tensor with dtype (?P<got>\w{1,64})",
        "DTYPE_MISMATCH",
        "tensorflow",
        "crop_and_resize needs {expected} boxes; a {got} tensor is not converted silently.",
        "boxes = tf.cast(boxes, tf.{expected})",
        context=_ROI,
    ),
    Rule(
        r"unexpected keyword argument '(?P<name>box_ind)'",
        "API_RENAMED",
        "tensorflow",
        "TensorFlow 2 renamed crop_and_resize's box_ind argument to box_indices.",
        "tf.image.crop_and_resize(image, boxes, box_indices=box_indices, crop_size=crop_size)",
    ),
    Rule(
        r"crop_and_resize\w{0,20}\(\) got an unexpected keyword argument 'box_indices'",
        "API_RENAMED",
        "tensorflow",
        "TensorFlow 1.x calls crop_and_resize's third argument box_ind; box_indices is the TF2 name.",
        "tf.image.crop_and_resize(image, boxes, box_ind=box_indices, crop_size=crop_size)  # TF1, or pass it "
        "positionally",
    ),
    Rule(
        r"No OpKernel was registered to support Op 'CropAndResize' with these attrs",
        "DTYPE_UNSUPPORTED",
        "tensorflow",
        "this TensorFlow has no CropAndResize kernel for the image's dtype on this device. TensorFlow 1.0 "
        "registered a float CPU kernel only, so a uint8 image from cv2 / PIL failed (tensorflow/tensorflow#9020); "
        "TensorFlow 2.21 runs a uint8 image on the CPU, eager and in tf.function (float32 crops of the raw 0-255 "
        "values, recorded), but its GPU kernels take half, float and double only (TF_CALL_GPU_NUMBER_TYPES in "
        "tensorflow/core/kernels/image/crop_and_resize_op.cc), so a uint8 image placed on a GPU without soft "
        "placement still has none.",
        "tf.image.crop_and_resize(tf.cast(image, tf.float32), boxes, box_indices, crop_size)  # divide by 255 if "
        "the model expects [0, 1]",
    ),
    Rule(
        r"Value for attr 'T' of (?P<dtype>\w{1,32}) is not in the list of allowed values: (?P<allowed>[\w, ]{1,200})",
        "DTYPE_UNSUPPORTED",
        "tensorflow",
        "CropAndResize's image may be {allowed}; a {dtype} image is refused by the op's definition before any "
        "kernel runs (TensorFlow 2.21). A uint8 image is accepted: it gives float32 crops of the 0-255 values.",
        "tf.image.crop_and_resize(tf.cast(image, tf.float32), boxes, box_indices, crop_size)",
        context=r"CropAndResize",
    ),
    Rule(
        r"No registered '(?P<op>CropAndResize\w{0,20})' OpKernel for (?P<device>XLA_\w{1,20}) devices",
        "NO_KERNEL",
        "tensorflow",
        "TensorFlow has no XLA kernel for {op}, whatever the dtype: a tf.function(jit_compile=True), or a Keras "
        "model compiled with jit_compile=True, that calls crop_and_resize cannot be compiled for {device} "
        "(recorded with TensorFlow 2.21).",
        "compile that function without XLA: tf.function(fn, jit_compile=False) or model.compile(..., "
        "jit_compile=False); or call crop_and_resize outside the jit-compiled function",
    ),
    # --- position-sensitive pooling --------------------------------------------------------------
    Rule(
        r"input channels must be a multiple of pooling height \* pooling width",
        "PS_CHANNELS",
        "torchvision",
        "ps_roi_align / ps_roi_pool read each output bin (i, j) from its own group of channels, so the "
        "feature map needs C = C_out * PH * PW channels; its channel count is not a multiple of PH * PW.",
        "make the head conv output C_out * PH * PW channels (e.g. 4 * 7 * 7 = 196 for output_size 7), or pick "
        "output_size so that C % (PH * PW) == 0",
    ),
    # --- box sizes -------------------------------------------------------------------------------
    Rule(
        r"ROIs in (?P<op>ROIAlignRotated|ROIAlign) do not have non-negative size",
        "INVERTED_BOX",
        "detectron2",
        "a box has a negative width or height: {op} with aligned=True (detectron2's ROIAlignV2, "
        "ROIAlignRotated always) refuses it, where aligned=False would silently pool it as a 1 px box. The "
        "boxes are usually in another format (xywh or cxcywh read as xyxy, y/x swapped) or came out of a "
        "regression without clipping.",
        "check the format: xyxy with x2 >= x1 and y2 >= y1 (rotated: cx, cy, w, h, angle with w, h >= 0), e.g. "
        "assert (boxes[:, 2:] >= boxes[:, :2]).all(); roi-lab diagnose names the format",
    ),
    # --- ONNX export and runtimes ----------------------------------------------------------------
    Rule(
        r"ROIAlign with aligned=True is only supported in opset >= 16",
        "EXPORT_MISMATCH",
        "torchvision",
        "before opset 16 ONNX RoiAlign has no half-pixel mode, so torchvision exports your aligned=True pooler "
        "as aligned=False: the model is written anyway and pools half a feature cell off (onnx/onnx#3428).",
        "torch.onnx.export(model, args, path, opset_version=16)  # then check: roi-lab inspect path",
    ),
    Rule(
        r"ONNX export for RoIAlign with a non-zero sampling_ratio is not supported",
        "EXPORT_MISMATCH",
        "torchvision",
        "despite its words, torchvision warns for a negative sampling_ratio (-1, adaptive): it writes ONNX's "
        "0, which is the same adaptive grid (ceil(roi_size / output_size) per bin), so the model computes the "
        "same; a positive sampling_ratio is exported unchanged.",
        "nothing to fix; pass sampling_ratio=0 to the pooler to silence it (the same adaptive sampling)",
    ),
    Rule(
        r"The existing summation for max mode and sampling ratios besides 1 is incorrect",
        "EXPORT_MISMATCH",
        "onnxruntime",
        "the model has a RoiAlign with mode=max: onnxruntime takes the max of the weighted corner values of "
        "each sample, not the max of interpolated samples as mmcv does (microsoft/onnxruntime#6146, #14265), "
        "so its output differs from the PyTorch pooler's.",
        "export with mode='avg' where the model allows; roi-lab inspect model.onnx measures the difference",
    ),
    # --- feature pyramids: generic messages inside an FPN or a pooler ----------------------------
    Rule(  # torchvision < 0.10 MultiScaleRoIAlign.infer_scale: a bare assert (pytorch/vision#3747, #3949)
        r"(?:^|\n)AssertionError\s{0,4}(?:\n|$)",
        "FEATURE_PYRAMID",
        "torchvision",
        "MultiScaleRoIAlign infers each map's scale from its height and its width separately, and they "
        "disagree: on a very oblong image the padded short side rounds to another power of two.",
        "pass the scales yourself (pooler.scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]; roi_lab.MultiScaleRoIAlign "
        "infers them from the longer side), or resize so the short side is well above the largest stride",
        context=r"possible_scales|infer_scale",
    ),
    Rule(
        r"The size of tensor a \((?P<a>\d{1,20})\) must match the size of tensor b \((?P<b>\d{1,20})\) at "
        r"non-singleton dimension (?P<dim>[23])",
        "FEATURE_PYRAMID",
        "",
        "inside an FPN, a lateral map of {a} cells is added to the coarser map upsampled x2 ({b} cells): the "
        "input size is not a multiple of the largest stride (32 for P5, 64 with P6), so halving rounded "
        "(facebookresearch/detectron2#1840).",
        "pad the image to a multiple of 32: H, W = math.ceil(H / 32) * 32, math.ceil(W / 32) * 32 (detectron2: "
        "SIZE_DIVISIBILITY = 32; torchvision's GeneralizedRCNNTransform size_divisible=32), or upsample to the "
        "lateral's size: F.interpolate(top, size=lateral.shape[-2:])",
        context=r"[Ff][Pp][Nn]|top_down|lateral",
    ),
)

# --- reading a pasted traceback --------------------------------------------------------------------

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)", line \d+')
_CARET = re.compile(r"^\s*[\^~]+\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;]{0,32}m")
_LIBRARIES = (  # path fragment -> framework; the frame nearest the error wins
    ("detectron2", re.compile(r"[\\/]detectron2[\\/]")),
    ("mmcv", re.compile(r"[\\/]mmcv[\\/]")),
    ("torchvision", re.compile(r"[\\/]torchvision[\\/]")),
    ("onnxruntime", re.compile(r"[\\/]onnxruntime[\\/]")),
    ("onnx", re.compile(r"[\\/]onnx[\\/]")),
    ("tensorflow", re.compile(r"[\\/](?:tensorflow|keras)[\\/]")),
    ("torch", re.compile(r"[\\/]torch[\\/]")),
)
_STYLES = (  # message style -> framework, when no library frame says
    ("onnxruntime", re.compile(r"\[ONNXRuntimeError\]|onnxruntime")),
    ("onnx", re.compile(r"\[ShapeInferenceError\]|op_type:")),
    ("tensorflow", re.compile(r"\{\{function_node|\[Op:\w{1,64}\]|\{\{node |tensorflow|crop_and_resize", re.I)),
    ("mmcv", re.compile(r"mmcv|mmdet")),
    ("detectron2", re.compile(r"detectron2|ROIPooler")),
    ("torchvision", re.compile(r"torchvision|roi_align|roi_pool|MultiScaleRoIAlign")),
)
_NEAR_FRAMES = 8  # how many frames nearest the error count as its context


def _compile(pattern: str) -> re.Pattern[str]:
    return _COMPILED.setdefault(pattern, re.compile(pattern, re.S))


_COMPILED: dict[str, re.Pattern[str]] = {}


class _Parsed:
    """A pasted text split into error lines (messages) and frames (file paths + source lines)."""

    def __init__(self, text: str) -> None:
        lines = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.frames: list[tuple[str, str]] = []  # (path, source line)
        other: list[str] = []  # every line that is not a frame, a source line or a caret line
        last_frame_at = 0  # index in `other` where the text after the last frame starts
        i = 0
        while i < len(lines):
            m = _FRAME.match(lines[i])
            if m:
                source = ""
                if i + 1 < len(lines) and lines[i + 1].startswith("    ") and not _FRAME.match(lines[i + 1]):
                    source = lines[i + 1].strip()
                    i += 1
                    while i + 1 < len(lines) and _CARET.match(lines[i + 1]):
                        i += 1
                self.frames.append((m["path"], source))
                last_frame_at = len(other)
            elif not _CARET.match(lines[i]):
                other.append(lines[i])
            i += 1
        # the error message is what follows the last frame; a chained exception or a plain paste
        # may hold the relevant message elsewhere, so every other line is searched second
        self.message = "\n".join(other[last_frame_at:]).strip()
        self.errors = "\n".join(other).strip()
        self.near = "\n".join(f"{p}\n{s}" for p, s in self.frames[-_NEAR_FRAMES:]) + "\n" + self.message

    def framework(self) -> str:
        found = [name for path, _ in self.frames for name, rx in _LIBRARIES if rx.search(path)]
        specific = [name for name in found if name != "torch"]
        if specific:
            return specific[-1]
        for name, rx in _STYLES:
            if rx.search(self.near):
                return name
        return found[-1] if found else "torch"


def _line_at(text: str, pos: int) -> str:
    """The line of ``text`` holding ``pos``: at most _MATCHED_CHARS of it, from a little before ``pos``."""
    start = max(text.rfind("\n", 0, pos) + 1, pos - _MATCHED_CHARS // 3)
    end = text.find("\n", pos)
    end = min(end if end >= 0 else len(text), start + _MATCHED_CHARS)
    return text[start:end].strip()


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _apply(rule: Rule, parsed: _Parsed, haystack: str, note: str) -> Explanation | None:
    m = rule.compiled().search(haystack)
    if m is None or (rule.context is not None and not _compile(rule.context).search(parsed.near)):
        return None
    fields = _Fields(rule.defaults)
    fields.update({k: v.strip() for k, v in m.groupdict().items() if v is not None})
    if rule.derive is not None:
        fields.update(rule.derive(fields))
    return Explanation(
        code=rule.code,
        framework=rule.framework or parsed.framework(),
        cause=rule.cause.format_map(fields),
        fix=rule.fix.format_map(fields),
        matched=_line_at(haystack, m.start()),
        note=note,
    )


def _bounded(text: str) -> tuple[str, str]:
    """``text`` cut to MAX_TEXT_CHARS (its head and its tail, on a line break) and a note saying so, or ``""``."""
    if len(text) <= MAX_TEXT_CHARS:
        return text, ""
    tail = MAX_TEXT_CHARS - _HEAD_CHARS
    note = (f"the text has {len(text):,} characters; only the first {_HEAD_CHARS:,} and the last {tail:,} "
            "were read: paste the error message and the traceback above it, not a whole log")
    return text[:_HEAD_CHARS] + "\n" + text[-tail:], note


def explain_error(text: str) -> Explanation | None:
    """Explain an ROI-pooling error message or a whole pasted traceback.

    Args:
        text (str): the message, or the traceback with it, as printed.

    Returns:
        Explanation | None: the first rule of :data:`RULES` that matches the error lines, with
        the numbers from the message filled in; ``None`` when the text is empty, not an ROI-pooling
        input error, or a generic error whose nearest frames are not ROI pooling code. A text of
        more than :data:`MAX_TEXT_CHARS` characters is read as its first 50,000 and last 150,000
        (``note`` says so); matching takes time linear in what is read.

    Example:
        >>> tb = '''Traceback (most recent call last):
        ...   File "train.py", line 9, in <module>
        ...     idx = np.array([0, 1, 5])
        ... onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument: [ONNXRuntimeError] : 2 :
        ... INVALID_ARGUMENT : Non-zero status code returned while running RoiAlign node. Name:'' Status
        ... Message: batch_indices value 5 at index 2 is out of range [0, 2)'''
        >>> e = explain_error(tb)
        >>> e.code, e.framework
        ('BATCH_INDEX_OUT_OF_RANGE', 'onnxruntime')
        >>> print(e.cause)
        roi 2 points at image 5, but the feature batch has 2 image(s): valid indices are 0..1.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    text, note = _bounded(text)
    parsed = _Parsed(text)
    for haystack in (parsed.message, parsed.errors):
        for rule in RULES:
            found = _apply(rule, parsed, haystack, note)
            if found is not None:
                return found
    return None
