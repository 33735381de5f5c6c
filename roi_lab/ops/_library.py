"""Small helpers the ops' registration layers share (torch.library ops, torch.fx leaves, ONNX).

Nothing here computes: the ops' numbers live in their private kernels (``_roi_align_kernel``,
``_crop_and_resize_kernel``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.overrides import handle_torch_function, has_torch_function

from roi_lab.errors import NotSupportedError


def tensor_args(*values: object) -> tuple:
    """The values torch function dispatch must see: tensors (or torch.fx proxies) and the items of
    lists, tuples and dicts of them."""
    found = []
    for v in values:
        if isinstance(v, dict):
            found.extend(v.values())
        elif isinstance(v, (list, tuple)):
            found.extend(v)
        else:
            found.append(v)
    return tuple(found)


def dispatch_torch_function(public: Callable, relevant: tuple, *args, **kwargs):
    """``(True, result)`` when ``relevant`` holds a torch.fx ``Proxy`` or a tensor subclass with
    ``__torch_function__``: the call is then handed to it, so torch.fx records ``public`` as one leaf
    node (what torchvision gets from ``torch.fx.wrap``), however ``public`` was imported. Else
    ``(False, None)`` and the caller goes on."""
    if has_torch_function(relevant):
        return True, handle_torch_function(public, relevant, *args, **kwargs)
    return False, None


def onnx_dynamo_exporting() -> bool:
    """True while ``torch.onnx.export(..., dynamo=True)`` traces the model: the ops then emit their
    ONNX node through ``torch.onnx.ops.symbolic``. (The TorchScript exporter, ``dynamo=False``,
    traces the registered op and uses its registered symbolic instead.)"""
    return torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export()


def onnx_error(op: str, *, expected: str, got: str, fix: str) -> NotSupportedError:
    """The error for an op or option that has no faithful ONNX export (raised, not warned: a model
    that computes something else is worse than no model)."""
    return NotSupportedError(f"torch.onnx.export of {op}", expected=expected, got=got, fix=fix)
