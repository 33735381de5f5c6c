"""ROI Lab's pytest plugin: the ``roi_capture`` fixture.

Installed with roi-lab (entry point ``pytest11``), so pytest loads it in every run of the environment; it
imports neither torch nor roi_lab until a test asks for the fixture, and does nothing for tests that do not.

Usage::

    def test_box_head(roi_capture):
        model(images)  # every ROI pooling call is recorded; an error finding fails the test

    @pytest.mark.roi_capture(image_size=(800, 1216), fail_on="warning")
    def test_custom_pipeline(roi_capture):
        ...

The marker's keywords are :func:`roi_lab.capture`'s (``image_size``, ``keep_features``, ``max_bytes``) and
``fail_on`` (``"error"``, the default, or ``"warning"``). The test fails with every failing finding, its
evidence and fix; ``roi_capture`` is the :class:`roi_lab.capture.Capture`, for the test's own checks.
"""

from __future__ import annotations

import pytest

_MARKER = "roi_capture"
_ATTR = "_roi_lab_capture"  # on the test item: (Capture, fail_on) while the fixture is active


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(image_size=None, keep_features=False, max_bytes=..., fail_on='error'): options of ROI Lab's "
        "roi_capture fixture",
    )


@pytest.fixture
def roi_capture(request: pytest.FixtureRequest):
    """Run the test inside ``roi_lab.capture()``; an error finding in a recorded ROI pooling call fails it."""
    from roi_lab.capture import capture

    options: dict = {}
    for mark in reversed(list(request.node.iter_markers(_MARKER))):  # the closest marker wins
        options.update(mark.kwargs)
    fail_on = options.pop("fail_on", "error")
    if fail_on not in ("error", "warning"):
        raise ValueError(f'@pytest.mark.roi_capture(fail_on=...) expects "error" or "warning"; got {fail_on!r}')
    with capture(**options) as cap:
        setattr(request.node, _ATTR, (cap, fail_on))
        try:
            yield cap
        finally:
            delattr(request.node, _ATTR)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    entry = getattr(item, _ATTR, None)
    if entry is None or outcome.excinfo is not None:
        return  # no roi_capture in this test, or it failed already
    from roi_lab.testing import assert_capture_ok

    try:
        assert_capture_ok(entry[0], fail_on=entry[1])
    except AssertionError as exc:
        failed = pytest.fail.Exception(str(exc), pytrace=False)  # the findings are the report: no traceback
        if hasattr(outcome, "force_exception"):
            outcome.force_exception(failed)
        else:  # pluggy < 1.1
            raise failed from None
