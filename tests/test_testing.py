"""roi_lab.testing (assert_rois_ok, assert_capture_ok) and the pytest plugin's roi_capture fixture."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision

from roi_lab.capture import capture
from roi_lab.errors import InputValueError
from roi_lab.testing import assert_capture_ok, assert_rois_ok

pytest_plugins = ["pytester"]

MAP = (1, 256, 50, 64)  # stride 16 of an 800 x 1024 image
ROIS = torch.tensor([[0.0, 100, 50, 900, 600]])


def test_assert_rois_ok_passes_and_returns_the_findings():
    assert assert_rois_ok(MAP, ROIS, image_size=(800, 1024), spatial_scale=1 / 16) == []
    tiny = torch.tensor([[0.0, 100, 50, 108, 60]])  # under one cell: an info
    assert [f.code for f in assert_rois_ok(MAP, tiny, image_size=(800, 1024), spatial_scale=1 / 16)] == ["SUBCELL_ROI"]


def test_assert_rois_ok_raises_with_the_findings():
    with pytest.raises(AssertionError) as exc:
        assert_rois_ok(MAP, ROIS, image_size=(800, 1024))  # spatial_scale left at 1
    lines = str(exc.value).splitlines()
    assert lines[0] == "roi_lab: 1 error finding in the boxes for roi_align:"
    assert lines[1].startswith("ERROR IMAGE_SPACE_BOXES: The boxes are in image pixels but spatial_scale is 1")
    assert lines[2].startswith("  evidence: max x2 = 900 > map width 64") and lines[3].startswith("  fix: roi_align(")


def test_assert_rois_ok_fail_on_warning():
    inverted = torch.tensor([[0.0, 10, 10, 20, 20], [0, 30, 30, 30, 40]])  # the second has zero width: a warning
    assert_rois_ok(MAP, inverted, image_size=(800, 1024), spatial_scale=1 / 16)
    with pytest.raises(AssertionError) as exc:
        assert_rois_ok(MAP, inverted, image_size=(800, 1024), spatial_scale=1 / 16, fail_on="warning")
    assert str(exc.value).startswith(
        "roi_lab: 1 error/warning finding in the boxes for roi_align:\nWARNING DEGENERATE_BOX"
    )


def test_assert_rois_ok_crop_and_resize():
    with pytest.raises(AssertionError) as exc:
        assert_rois_ok(
            (1, 3, 400, 600), torch.tensor([[10.0, 20, 200, 300]]), op="crop_and_resize", box_indices=torch.tensor([0])
        )
    assert "ERROR PIXELS_AS_NORMALIZED" in str(exc.value)


def test_fail_on_is_checked():
    with pytest.raises(InputValueError) as exc:
        assert_rois_ok(MAP, ROIS, fail_on="info")
    assert str(exc.value) == (
        'assert_rois_ok(fail_on=...) expects "error" (fail on errors) or "warning" (on errors and warnings); '
        "got str 'info'.\nFix: fail_on=\"error\""
    )
    with capture() as cap:
        pass
    with pytest.raises(InputValueError):
        assert_capture_ok(cap, fail_on="never")


def test_assert_capture_ok():
    features = torch.zeros(MAP)
    with capture(image_size=(800, 1024)) as cap:
        torchvision.ops.roi_align(features, ROIS, 7, spatial_scale=1 / 16)
    assert_capture_ok(cap)
    with capture(image_size=(800, 1024)) as cap:
        torchvision.ops.roi_align(features, ROIS, 7, spatial_scale=1 / 16)
        torchvision.ops.roi_align(features, ROIS, 7, spatial_scale=1 / 8)
    with pytest.raises(AssertionError) as exc:
        assert_capture_ok(cap)
    lines = str(exc.value).splitlines()
    assert lines[0] == "roi_lab capture: 1 error finding in 1 of 2 ROI pooling calls:"
    assert lines[1].startswith(f"#1 torchvision.ops.roi_align in {__name__}.test_assert_capture_ok (")
    assert lines[2].startswith("  1 boxes (rois [K,5]); map [1, 256, 50, 64] float32 on cpu; spatial_scale 1/8")
    assert lines[3].startswith("  ERROR WRONG_STRIDE: spatial_scale 1/8 does not match the feature map's stride")


# --------------------------------------------------------------------------------------------- the plugin

TESTS = """
import pytest
import torch
import torchvision

MAP = torch.zeros(1, 8, 50, 64)  # stride 16 of an 800 x 1024 image
ROIS = torch.tensor([[0.0, 100, 50, 900, 600]])


def test_no_fixture_no_capture():
    torchvision.ops.roi_align(MAP, ROIS, 7)  # wrong, but not checked: no roi_capture here


def test_good(roi_capture):
    torchvision.ops.roi_align(MAP, ROIS, 7, spatial_scale=1 / 16)
    assert len(roi_capture.calls) == 1


@pytest.mark.roi_capture(image_size=(800, 1024))
def test_image_space_boxes(roi_capture):
    torchvision.ops.roi_align(MAP, ROIS, 7)


def test_own_failure_wins(roi_capture):
    torchvision.ops.roi_align(MAP, ROIS, 7)
    assert False, "the test's own assertion"


@pytest.mark.roi_capture(image_size=(800, 1024), fail_on="warning")
def test_warnings_too(roi_capture):
    torchvision.ops.roi_align(MAP, torch.tensor([[0.0, 10, 10, 10, 40]]), 7, spatial_scale=1 / 16)


@pytest.mark.roi_capture(fail_on="never")
def test_bad_marker(roi_capture):
    pass
"""


def test_roi_capture_fixture(pytester):
    pytester.makepyfile(test_user_models=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=3, errors=1)
    text = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ test_image_space_boxes _*",
            "roi_lab capture: 1 error finding in 1 of 1 ROI pooling calls:",
            "#0 torchvision.ops.roi_align in test_user_models.test_image_space_boxes (test_user_models.py:20)",
            "  ERROR IMAGE_SPACE_BOXES: The boxes are in image pixels but spatial_scale is 1*",
            "    fix: roi_align(features, rois, output_size, spatial_scale=1 / 16)*",
            "*_ test_own_failure_wins _*",
            "*AssertionError: the test's own assertion",
            "*_ test_warnings_too _*",
            "roi_lab capture: 1 error/warning finding in 1 of 1 ROI pooling calls:",
            "  WARNING DEGENERATE_BOX: *",
        ]
    )
    assert "_execution.py" not in text  # the findings are the report, without pluggy's frames
    assert "ERROR at teardown" not in text
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_bad_marker _*",
            '*ValueError: @pytest.mark.roi_capture(fail_on=...) expects "error" or "warning"; got \'never\'',
        ]
    )


def test_assert_rois_ok_in_a_users_test(pytester):
    pytester.makepyfile(
        test_user_boxes="""
        import torch
        from roi_lab.testing import assert_rois_ok

        def test_boxes():
            assert_rois_ok((1, 256, 50, 64), torch.tensor([[0.0, 100, 50, 900, 600]]), image_size=(800, 1024),
                           spatial_scale=1 / 8)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: roi_lab: 1 error finding in the boxes for roi_align:*", "*ERROR WRONG_STRIDE*"]
    )


@pytest.mark.slow
def test_the_plugin_is_installed_cheap_and_inert(pytester):
    # A fresh pytest process: the plugin comes from the pytest11 entry point (no -p), a test that does not use the
    # fixture runs without torch or roi_lab imported, and the fixture works.
    pytester.makepyfile(
        test_user_plugin="""
        import sys

        def test_first_no_torch():
            assert "torch" not in sys.modules and "roi_lab" not in sys.modules
            assert "roi_lab_pytest" in sys.modules

        def test_then_the_fixture(roi_capture):
            import torch, torchvision
            torchvision.ops.roi_align(torch.zeros(1, 1, 8, 8), torch.tensor([[0.0, 1, 1, 4, 4]]), 2)
            assert [c.op for c in roi_capture.calls] == ["torchvision.ops.roi_align"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", timeout=300)
    result.assert_outcomes(passed=2)


def test_plugin_import_does_not_import_torch():
    code = "import sys, roi_lab_pytest; print(sorted(m for m in ('torch', 'roi_lab') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
