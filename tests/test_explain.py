"""Tests for roi_lab.explain: real recorded messages, one positive and one negative per code, varying numbers.

The recorded messages in tests/data/error_messages.json come from running torchvision, onnxruntime / onnx and
TensorFlow with bad inputs (tests/fixtures/gen_error_messages.py) or, for CUDA, mmcv and detectron2, from
issue threads and source files (the ``source`` field names the URL). Texts marked "synthetic" below are
written for a test; they are never the only evidence for a rule that has a recorded message.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from roi_lab.explain import CODES, RULES, Explanation, explain_error

DATA = Path(__file__).parent / "data" / "error_messages.json"
RECORDS = json.loads(DATA.read_text())


def _tb(*frames: tuple[str, str], error: str) -> str:
    """A Python traceback (synthetic) with the given (path, source line) frames and final error line."""
    lines = ["Traceback (most recent call last):"]
    for i, (path, source) in enumerate(frames):
        lines += [f'  File "{path}", line {10 + i}, in f{i}', f"    {source}"]
    return "\n".join([*lines, error])


SITE = "/opt/conda/lib/python3.10/site-packages"
TV_FRAMES = (
    ("/home/me/det/train.py", "pooled = roi_align(feats, rois, 7, 1 / 16)"),
    (f"{SITE}/torchvision/ops/roi_align.py", "return torch.ops.torchvision.roi_align("),
    (f"{SITE}/torch/_ops.py", "return self._op(*args, **kwargs)"),
)


# --------------------------------------------------------------------------------------------- recorded data


def test_recorded_data_covers_every_code_and_framework():
    codes = {r["code"] for r in RECORDS}
    assert set(CODES) <= codes
    frameworks = {r["framework"] for r in RECORDS}
    assert {"torchvision", "onnxruntime", "onnx", "mmcv", "detectron2"} <= frameworks
    recorded = [r for r in RECORDS if r["source"].endswith("(recorded)")]
    assert len(recorded) >= 40
    assert all(r["source"].startswith("https://github.com/") for r in RECORDS if r not in recorded)


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_recorded_traceback_is_explained(record):
    e = explain_error(record["text"])
    if record["code"] is None:
        assert e is None, e
        return
    assert e is not None
    assert (e.code, e.framework) == (record["code"], record["framework"])
    assert e.matched and e.matched in record["text"].replace("\r", "")
    assert e.cause and e.fix and not re.search(r"\{[a-z_]+\}", e.cause + e.fix)


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_recorded_message_alone(record):
    """The final message without its traceback: generic ones (no ROI context left) must give None."""
    e = explain_error(record["message"])
    assert (e.code if e else None) == record["message_code"]


# --------------------------------------------------------------------------------------------- each code

# code -> (positive text, negative text that looks close but must not give this code)
PAIRS = {
    "MISSING_BATCH_INDEX": (
        "AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]",
        "AssertionError: The shape of the tensor in the boxes list is not correct as List[Tensor[L, 4]]",
    ),
    "BOX_COLUMNS": (
        "tensorflow.python.framework.errors_impl.InvalidArgumentError: boxes must have 4 columns [Op:CropAndResize]",
        "ValueError: x must have 4 columns, got 5 (in pandas.DataFrame.plot)",
    ),
    "BAD_RANK": (
        _tb(*TV_FRAMES, error="IndexError: Dimension out of range (expected to be in range of [-1, 0], but got 1)"),
        _tb(
            ("/home/me/nlp/model.py", "h = x.transpose(1, 2)"),
            error="IndexError: Dimension out of range (expected to be in range of [-1, 0], but got 1)",
        ),
    ),
    "EMPTY_BOXES": (
        _tb(
            ("/home/me/det/heads.py", "rois = roi_align(p4, torch.cat(proposals), 7)"),
            error="ValueError: torch.cat(): expected a non-empty list of Tensors",
        ),
        _tb(
            ("/home/me/data/collate.py", "return torch.cat(batch)"),
            error="ValueError: torch.cat(): expected a non-empty list of Tensors",
        ),
    ),
    "DTYPE_MISMATCH": (
        "RuntimeError: roi_align_forward_kernel, roi_align_kernel.cpp:302, input should have the same type as rois",
        "RuntimeError: mat1 and mat2 must have the same dtype, but got Half and Float",
    ),
    "DTYPE_UNSUPPORTED": (
        "RuntimeError: \"roi_pool_forward_kernel\" not implemented for 'Long'",
        "RuntimeError: \"addmm_impl_cpu_\" not implemented for 'Half'",
    ),
    "DEVICE_MISMATCH": (
        _tb(
            *TV_FRAMES,
            error="RuntimeError: Expected all tensors to be on the same device, but found at least two "
            "devices, cuda:0 and cpu!",
        ),
        _tb(
            ("/home/me/nlp/model.py", "y = self.proj(x)"),
            error="RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
            "cuda:0 and cpu! (when checking argument for argument mat1 in method wrapper_CUDA_addmm)",
        ),
    ),
    "BOX_INDICES_SHAPE": (
        "InvalidArgumentError: box_indices must be rank 1 but is shape [8,1] [Op:CropAndResize]",
        "InvalidArgumentError: indices must be rank 1 but is shape [8,1] [Op:GatherV2]",
    ),
    "BATCH_INDEX_OUT_OF_RANGE": (
        "OutOfRangeError: box_index has values outside [0, batch_size) [Op:CropAndResize]",
        "IndexError: index 5 is out of bounds for dimension 0 with size 2",
    ),
    "NON_FINITE": (
        _tb(*TV_FRAMES, error="ValueError: cannot create std::vector larger than max_size()"),
        _tb(
            ("/home/me/tracker/kalman.py", "states = np.empty(n_tracks * steps)"),
            error="ValueError: cannot create std::vector larger than max_size()",
        ),
    ),
    "CROP_SIZE": (
        "InvalidArgumentError: crop_size must have two elements[1] [Op:CropAndResize]",
        "ValueError: crop_size must be smaller than the image",
    ),
    "FEATURE_PYRAMID": (
        "AssertionError: unequal value, num_level_assignments=3, but x is list of 5 Tensors",
        _tb(("/home/me/app/config.py", "level = LEVELS[i]"), error="IndexError: list index out of range"),
    ),
    "API_RENAMED": (
        "TypeError: crop_and_resize_v2() got an unexpected keyword argument 'box_ind'",
        "TypeError: resize() got an unexpected keyword argument 'align_corners'",
    ),
    "PS_CHANNELS": (
        "RuntimeError: ps_roi_pool_forward_kernel, ps_roi_pool_kernel.cpp:177, input channels must be a multiple "
        "of pooling height * pooling width",
        "RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 4, 224, 224] to have 3 "
        "channels, but got 4 channels instead",
    ),
    "INVERTED_BOX": (
        "RuntimeError: ROIs in ROIAlign do not have non-negative size!",
        "ValueError: Boxes do not have non-negative size",
    ),
    "EXPORT_MISMATCH": (
        "UserWarning: ROIAlign with aligned=True is only supported in opset >= 16. Please export with opset 16 "
        "or higher, or use aligned=False.",
        "UserWarning: Exporting aten::index operator of advanced indexing in opset 11 is achieved by combination "
        "of multiple ONNX operators",
    ),
    "NO_KERNEL": (
        "InvalidArgumentError: Detected unsupported operations when trying to compile graph __inference_f_12 on "
        "XLA_GPU_JIT: CropAndResize (No registered 'CropAndResize' OpKernel for XLA_GPU_JIT devices compatible "
        "with node {{node CropAndResize}}){{node CropAndResize}}",
        "InvalidArgumentError: Detected unsupported operations when trying to compile graph __inference_f_12 on "
        "XLA_CPU_JIT: UniqueV2 (No registered 'UniqueV2' OpKernel for XLA_CPU_JIT devices compatible with node "
        "{{node UniqueV2}}){{node UniqueV2}}",
    ),
}


def test_pairs_cover_every_code():
    assert set(PAIRS) == set(CODES)


@pytest.mark.parametrize("code", CODES)
def test_code_positive(code):
    e = explain_error(PAIRS[code][0])
    assert e is not None and e.code == code


@pytest.mark.parametrize("code", CODES)
def test_code_negative(code):
    e = explain_error(PAIRS[code][1])
    assert e is None or e.code != code


# --------------------------------------------------------------------------------------------- varying numbers


@pytest.mark.parametrize(("value", "index", "batch"), [(5, 2, 2), (-1, 0, 4), (17, 130, 16)])
def test_onnxruntime_out_of_range_numbers(value, index, batch):
    text = _tb(
        ("/srv/export/check.py", "sess.run(None, feeds)"),
        (f"{SITE}/onnxruntime/capi/onnxruntime_inference_collection.py", "return self._sess.run(...)"),
        error="onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument: [ONNXRuntimeError] : 2 : "
        "INVALID_ARGUMENT : Non-zero status code returned while running RoiAlign node. Name:'/roi/RoiAlign' "
        f"Status Message: batch_indices value {value} at index {index} is out of range [0, {batch})",
    )
    e = explain_error(text)
    assert e.code == "BATCH_INDEX_OUT_OF_RANGE" and e.framework == "onnxruntime"
    assert e.cause == (
        f"roi {index} points at image {value}, but the feature batch has {batch} image(s): "
        f"valid indices are 0..{batch - 1}."
    )
    assert e.fix.endswith(f"[0, {batch})")


@pytest.mark.parametrize(("shape", "rank"), [("4", 1), ("1,2,4", 3), ("2,3,100,4", 4), ("", 0)])
def test_tensorflow_boxes_rank_numbers(shape, rank):
    text = (
        "tensorflow.python.framework.errors_impl.InvalidArgumentError: {{function_node "
        f"__wrapped__CropAndResize_device_/job:localhost/replica:0/task:0/device:GPU:0}} boxes must be 2-D, got: "
        f"[{shape}] [Op:CropAndResize]"
    )
    e = explain_error(text)
    assert (e.code, e.framework) == ("BAD_RANK", "tensorflow")
    assert f"shape [{shape}] (rank {rank})" in e.cause


@pytest.mark.parametrize(("levels", "got"), [(4, 1), (5, 3)])
def test_detectron2_levels_numbers(levels, got):
    text = _tb(
        ("/work/d2/roi_heads.py", "box_features = self.box_pooler(features, boxes)"),
        ("/usr/lib/python3/dist-packages/detectron2/modeling/poolers.py", "assert ("),
        error=f"AssertionError: unequal value, num_level_assignments={levels}, but x is list of {got} Tensors",
    )
    e = explain_error(text)
    assert (e.code, e.framework) == ("FEATURE_PYRAMID", "detectron2")
    assert e.cause == f"the ROIPooler was built for {levels} feature levels (one per scale) but got {got} feature maps."


@pytest.mark.parametrize(("a", "b"), [("cuda:0", "cpu"), ("cpu", "cuda:1"), ("cuda:2", "cuda:0")])
def test_device_names_vary(a, b):
    text = _tb(
        *TV_FRAMES,
        error=f"RuntimeError: Expected all tensors to be on the same device, but found at least "
        f"two devices, {a} and {b}!",
    )
    e = explain_error(text)
    assert (e.code, e.framework) == ("DEVICE_MISMATCH", "torchvision")
    assert f"on {a} and on {b}" in e.cause


@pytest.mark.parametrize(("found", "expected"), [("Half", "Float"), ("Double", "Float"), ("Float", "BFloat16")])
def test_scalar_type_names_vary(found, expected):
    text = _tb(*TV_FRAMES, error=f"RuntimeError: expected scalar type {expected} but found {found}")
    e = explain_error(text)
    assert e.code == "DTYPE_MISMATCH" and f"expected {expected} and found {found}" in e.cause


@pytest.mark.parametrize("dtype", ["Int", "Long", "Bool", "ComplexFloat"])
def test_unsupported_dtype_named(dtype):
    e = explain_error(
        f'RuntimeError: operator(), roi_align_kernel.cpp:320, "roi_align_forward_kernel" '
        f"not implemented for '{dtype}'"
    )
    assert e.code == "DTYPE_UNSUPPORTED" and f"no {dtype} version" in e.cause


def test_windows_paths_and_ansi_colours_and_crlf():
    text = (
        "Traceback (most recent call last):\r\n"
        '  File "C:\\proj\\train.py", line 3, in <module>\r\n'
        "    out = pooler(feats, boxes, sizes)\r\n"
        '  File "C:\\Users\\me\\miniconda3\\lib\\site-packages\\torchvision\\ops\\poolers.py", line 125, '
        "in _setup_scales\r\n"
        "    lvl_min = -torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item()\r\n"
        "\x1b[31mIndexError\x1b[0m: list index out of range\r\n"
    )
    e = explain_error(text)
    assert (e.code, e.framework) == ("FEATURE_PYRAMID", "torchvision")
    assert e.matched == "IndexError: list index out of range"


def test_chained_exception_uses_the_roi_error():
    inner = _tb(*TV_FRAMES, error="RuntimeError: roi_align_forward_kernel, input should have the same type as rois")
    text = (
        inner
        + "\n\nDuring handling of the above exception, another exception occurred:\n\n"
        + _tb(("/home/me/det/train.py", "raise TrainingFailed(step)"), error="__main__.TrainingFailed: step 12")
    )
    e = explain_error(text)
    assert e.code == "DTYPE_MISMATCH"


# --------------------------------------------------------------------------------------------- unrelated errors

UNRELATED = {
    "cuda_oom": _tb(
        ("/home/me/det/train.py", "loss = model(images, targets)"),
        (f"{SITE}/torchvision/models/detection/roi_heads.py", "box_features = self.box_head(box_features)"),
        error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total "
        "capacity; 13.10 GiB already allocated; 1.21 GiB free; 13.40 GiB reserved in total by PyTorch)",
    ),
    "key_error": _tb(
        ("/home/me/det/dataset.py", "label = self.classes[ann['category']]"),
        error="KeyError: 'category'",
    ),
    "matmul_in_roi_heads": _tb(
        ("/home/me/det/train.py", "loss_dict = model(images, targets)"),
        (f"{SITE}/torchvision/models/detection/roi_heads.py", "box_features = self.box_head(box_features)"),
        (f"{SITE}/torchvision/models/detection/faster_rcnn.py", "x = F.relu(self.fc6(x))"),
        (f"{SITE}/torch/nn/modules/linear.py", "return F.linear(input, self.weight, self.bias)"),
        error="RuntimeError: mat1 and mat2 shapes cannot be multiplied (512x12544 and 256x1024)",
    ),
    "generic_shape_mismatch": "RuntimeError: The size of tensor a (21) must match the size of tensor b (22) at "
    "non-singleton dimension 3",
    "generic_device": "RuntimeError: Expected all tensors to be on the same device, but found at least two "
    "devices, cuda:0 and cpu!",
    "empty_cat_alone": "ValueError: torch.cat(): expected a non-empty list of Tensors",
    "dim_out_of_range_alone": "IndexError: Dimension out of range (expected to be in range of [-1, 0], but got 1)",
    "torchvision_backend_missing": "NotImplementedError: Could not run 'torchvision::nms' with arguments from "
    "the 'CUDA' backend.",
    "plain_text": "hello, world",
    "empty": "",
    "whitespace": "  \n\t ",
}


@pytest.mark.parametrize("name", sorted(UNRELATED))
def test_unrelated_errors_give_none(name):
    assert explain_error(UNRELATED[name]) is None


@pytest.mark.parametrize("value", [None, 42, b"AssertionError: RoI must be (idx, x1, y1, x2, y2)!"])
def test_non_text_gives_none(value):
    assert explain_error(value) is None


# --------------------------------------------------------------------------------------------- pinned content


def test_missing_batch_index_message_pinned():
    e = explain_error(RECORDS[0]["text"])
    assert e == Explanation(
        code="MISSING_BATCH_INDEX",
        framework="torchvision",
        cause="a single boxes tensor must be Tensor[K, 5] (batch_index, x1, y1, x2, y2); yours is not. Usually it "
        "is Tensor[K, 4]: the batch-index column is missing (a [K, 6] tensor or a 3-D [N, K, 4] batch gives the "
        "same message).",
        fix="rois = torch.cat([batch_idx[:, None].to(boxes), boxes], dim=1)  # Tensor[K, 5], or pass a list with "
        "one Tensor[L, 4] per image: roi_align(features, [boxes], output_size)",
        matched="AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]",
    )


def test_multiscale_batch_column_message_pinned():
    record = next(r for r in RECORDS if r["id"] == "tv_msroi_k5")
    e = explain_error(record["text"])
    assert e.code == "BOX_COLUMNS"
    assert e.fix == "drop the batch-index column: pooler(features, [b[:, 1:] for b in boxes], image_sizes)"


def test_tf2_rename_message_pinned():
    e = explain_error("TypeError: Got an unexpected keyword argument 'box_ind'")
    assert e.to_dict() == {
        "code": "API_RENAMED",
        "framework": "tensorflow",
        "cause": "TensorFlow 2 renamed crop_and_resize's box_ind argument to box_indices.",
        "fix": "tf.image.crop_and_resize(image, boxes, box_indices=box_indices, crop_size=crop_size)",
        "matched": "TypeError: Got an unexpected keyword argument 'box_ind'",
        "note": "",
    }


def test_onnx_feed_columns_message_pinned():
    record = next(r for r in RECORDS if r["id"] == "ort_feed_k5_typed")
    e = explain_error(record["text"])
    assert e.cause == (
        "the model declares rois with 4 on axis 1, your array has 5: ONNX RoiAlign takes [K, 4] boxes and the "
        "batch index in a separate batch_indices input."
    )


def test_crop_size_message_pinned():
    e = explain_error("InvalidArgumentError: crop_size must have two elements[3] [Op:CropAndResize]")
    assert e.cause == "crop_size has 3 elements; it must be exactly two, [crop_height, crop_width]."


# --------------------------------------------------------------------------------------------- the table


def test_rules_are_data_with_known_codes():
    for rule in RULES:
        assert rule.code in CODES
        re.compile(rule.pattern)
        if rule.context:
            re.compile(rule.context)


def test_every_rule_is_exercised():
    """Each rule explains at least one recorded message or one text in this file (no dead rules)."""
    texts = [r["text"] for r in RECORDS] + [t for pair in PAIRS.values() for t in pair]
    texts += [
        _tb(*TV_FRAMES, error="RuntimeError: expected scalar type Float but found Half"),
        _tb(
            ("/home/me/det/model.py", "out = pooler(feats, [boxes], sizes)"),
            (f"{SITE}/torchvision/ops/poolers.py", "rois = _convert_to_roi_format(boxes)"),
            error="IndexError: too many indices for tensor of dimension 1",
        ),
        _tb(*TV_FRAMES, error="RuntimeError: stack expects a non-empty TensorList"),
        "RuntimeError: \"ROIPool_forward\" not implemented for 'Half'",
        "TypeError: crop_and_resize() got an unexpected keyword argument 'box_indices'",
        "ValueError: Shape must be rank 1 but is rank 2 for '{{node CropAndResize}} = CropAndResize[T=DT_FLOAT]'",
    ]
    used = set()
    for text in texts:
        e = explain_error(text)
        if e is None:
            continue
        used |= {i for i, rule in enumerate(RULES) if rule.code == e.code and re.search(rule.pattern, text, re.S)}
    unused = [RULES[i].pattern for i in range(len(RULES)) if i not in used]
    assert not unused


def test_explanation_is_frozen_and_serialisable():
    e = explain_error("AssertionError: RoI must be (idx, x1, y1, x2, y2)!")
    assert e.framework == "mmcv"
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.code = "X"  # type: ignore[misc]
    assert json.loads(json.dumps(e.to_dict()))["code"] == "MISSING_BATCH_INDEX"


# ------------------------------------------------------------------- issue 14: TensorFlow 2.21 and FPN messages

BY_ID = {r["id"]: r for r in RECORDS}


def test_tensorflow_uint8_message_is_explained_for_what_tensorflow_2_21_does():
    """TF 1.0's message (tensorflow/tensorflow#9020); TF 2.21 itself raises nothing for uint8 (gen_error_messages.py
    checks that when it records), so the explanation must not claim that it does."""
    e = explain_error(BY_ID["tf1_uint8_no_kernel"]["text"])
    assert (e.code, e.framework) == ("DTYPE_UNSUPPORTED", "tensorflow")
    assert e.cause == (
        "this TensorFlow has no CropAndResize kernel for the image's dtype on this device. TensorFlow 1.0 registered "
        "a float CPU kernel only, so a uint8 image from cv2 / PIL failed (tensorflow/tensorflow#9020); TensorFlow "
        "2.21 runs a uint8 image on the CPU, eager and in tf.function (float32 crops of the raw 0-255 values, "
        "recorded), but its GPU kernels take half, float and double only (TF_CALL_GPU_NUMBER_TYPES in "
        "tensorflow/core/kernels/image/crop_and_resize_op.cc), so a uint8 image placed on a GPU without soft "
        "placement still has none."
    )
    assert e.fix.startswith("tf.image.crop_and_resize(tf.cast(image, tf.float32), boxes, box_indices, crop_size)")


def test_tensorflow_2_21_bfloat16_image_message():
    record = BY_ID["tf_bfloat16_image"]
    assert record["source"] == "tensorflow 2.21.0 (recorded)"
    e = explain_error(record["text"])
    assert e.cause == (
        "CropAndResize's image may be uint8, uint16, int8, int16, int32, int64, half, float, double; a bfloat16 "
        "image is refused by the op's definition before any kernel runs (TensorFlow 2.21). A uint8 image is "
        "accepted: it gives float32 crops of the 0-255 values."
    )
    assert e.fix == "tf.image.crop_and_resize(tf.cast(image, tf.float32), boxes, box_indices, crop_size)"
    # the same attr message for another op is not a crop_and_resize problem
    other = "InvalidArgumentError: Value for attr 'T' of bfloat16 is not in the list of allowed values: float [Op:Erf]"
    assert explain_error(other) is None


def test_tensorflow_2_21_xla_message():
    record = BY_ID["tf_xla_jit_compile"]
    assert record["source"] == "tensorflow 2.21.0 (recorded)" and "gen_error_messages" not in record["text"]
    e = explain_error(record["text"])
    assert (e.code, e.framework) == ("NO_KERNEL", "tensorflow")
    assert e.cause == (
        "TensorFlow has no XLA kernel for CropAndResize, whatever the dtype: a tf.function(jit_compile=True), or a "
        "Keras model compiled with jit_compile=True, that calls crop_and_resize cannot be compiled for XLA_CPU_JIT "
        "(recorded with TensorFlow 2.21)."
    )
    assert e.fix.startswith("compile that function without XLA: tf.function(fn, jit_compile=False)")


def test_fpn_top_down_message_recorded_on_a_real_resnet():
    record = BY_ID["fpn_top_down_330"]
    assert record["source"] == "torch 2.14.1 (recorded)"
    assert record["message"] == (
        "RuntimeError: The size of tensor a (21) must match the size of tensor b (22) at non-singleton dimension 3"
    )
    e = explain_error(record["text"])
    assert (e.code, e.framework) == ("FEATURE_PYRAMID", "torch")
    assert e.cause.startswith("inside an FPN, a lateral map of 21 cells is added to the coarser map upsampled x2 "
                              "(22 cells)")  # fmt: skip
    assert explain_error(record["message"]) is None  # without the FPN frames: a generic broadcasting error
