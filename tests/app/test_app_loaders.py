"""roi_lab.ui.loaders helpers that need no Streamlit runtime."""

import numpy as np
import torch

from roi_lab.ui.overview import _stack_or_nan


def test_stack_or_nan_keeps_crops_and_marks_refused_variants():
    ok = torch.arange(6, dtype=torch.float64).view(1, 2, 3)
    out = _stack_or_nan([ok, None, ok.half()], (1, 2, 3))
    assert out.shape == (3, 1, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], ok.numpy())
    np.testing.assert_array_equal(out[2], ok.numpy())
    assert np.isnan(out[1]).all()
