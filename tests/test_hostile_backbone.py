"""load_backbone and feature_summary on hostile checkpoints and maps: clear InputValueErrors, a warning for
NaN weights (naming the tensors), and a PCA view that survives NaN.

Networks cut (as in test_backbone.py); models built from torchvision's own resnet18 state dict.
"""

from __future__ import annotations

import socket
import urllib.request
import warnings

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roi_lab.backbone import NonFiniteWeightsWarning, feature_summary, load_backbone
from roi_lab.errors import InputValueError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv("ROI_LAB_WEIGHTS", raising=False)


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
