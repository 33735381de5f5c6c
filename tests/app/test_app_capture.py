"""The app on a capture file of torchvision's real Faster R-CNN (issue 13): every page, under AppTest.

The captures (``capture_fixtures``) are made here from a random-weight ``fasterrcnn_resnet50_fpn`` on the
bundled coffee photo (128 x 192 after the transform). Each test opens one through the Image & backbone
page's uploader, as a user does, and checks what the pages then show against the capture itself and
against torchvision.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from apphelpers import PAGES, array, figure, make_app, no_exception, texts
from capture_fixtures import captures, hostile_pickle

from roi_lab.capture import load_capture
from roi_lab.ui.state import K, widget_key

pytestmark = pytest.mark.slow


def open_capture(at, data: bytes, name: str = "capture.pt"):
    """Pick "Capture file" as the source on the Image & backbone page and upload ``data``."""
    if at.session_state[K.SOURCE] != "capture":
        at.radio(key=widget_key(K.SOURCE)).set_value("capture").run()
    at.file_uploader(key="capture_upload").set_value((name, data, "application/octet-stream")).run()
    no_exception(at)
    return at


def parsed(data: bytes, tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(data)
    return load_capture(path)


def coords(rows) -> np.ndarray:
    return np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], dtype=np.float64).reshape(-1, 4)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def visit_every_page(at) -> None:
    for page in ("boxes", "side", "diagnose", "parity", "image"):
        at.switch_page(PAGES[page]).run()
        no_exception(at)


# ------------------------------------------------------------------------------------------------ keep_features=True
def test_a_capture_replaces_the_sample_and_the_backbone_with_the_models_own_image_boxes_and_map(tmp_path):
    c = captures()
    cap = parsed(c.full, tmp_path)
    (call,) = cap.calls
    at = open_capture(make_app("image"), c.full, "frcnn.pt")
    ss = at.session_state
    assert ss[K.CAPTURE_NAME] == "frcnn.pt" and ss[K.CAPTURE_ERROR] is None
    assert [t.value for t in at.subheader] == ["Capture: frcnn.pt"]
    # the default view: the level that got the most boxes; the table holds exactly those boxes, in the order passed
    counts = call.level_counts()
    level = int(np.argmax(counts))
    assert ss[K.CAPTURE_LEVEL] == level and ss[K.CAPTURE_ONLY_LEVEL] is True
    expected = call.boxes[0][call.levels == level].double().numpy()  # float32 -> float64: exact
    np.testing.assert_array_equal(coords(ss[K.BOXES]), expected)
    assert ss[K.BOXES][0]["label"].endswith(f"L{call.level_names[level]}")
    # the call's own parameters are the settings of "your call": Faster R-CNN's pooler is legacy aligned=False
    assert (ss[K.OUTPUT_SIZE], ss[K.SAMPLING_RATIO], ss[K.ALIGNED]) == (7, 2, False)
    m = metrics(at)
    assert m["Feature map"] == f"{list(call.level_shapes[level])}"
    assert m["spatial_scale of the call"] == f"1/{round(1 / call.scales[level])}"
    assert m["Frame (H x W)"] == "128 x 192" and m["Nominal stride"] == str(round(1 / call.scales[level]))
    # the map drawn is the model's own FPN level (computed again outside the capture), not a backbone of ours
    z = array(figure(at, "feature_summary_chart")["data"][0]["z"])
    fpn = c.fpn[call.level_names[level]][0].mean(0).numpy()  # [h, w]
    np.testing.assert_allclose(z, fpn, rtol=1e-5, atol=1e-5)
    # the image shown is the transformed batch (its pixels: test_app_capture_view.py)
    (img,) = at.get("image")
    assert "batch image 0, 192 x 128 px (the padded batch, un-normalized)" in img.captions[0]
    # the recorded finding of the call is on the page
    assert any("SUBCELL_ROI" in t for t in texts(at.info))


def test_side_by_side_crops_the_captured_map_with_the_calls_own_parameters():
    c = captures()
    at = open_capture(make_app("image"), c.full)
    level = at.session_state[K.CAPTURE_LEVEL]
    at.switch_page(PAGES["side"]).run()
    no_exception(at)
    caption = texts(at.caption)[0]
    assert caption.startswith("your model's call #0 (torchvision.ops.MultiScaleRoIAlign) level '")
    assert "Your call's spatial_scale 1/" in caption and '"Your settings" is the call as it ran' in caption
    assert any(t.startswith("aligned=False is the legacy") for t in texts(at.warning))  # the call's aligned=False
    # tile 0 ("Your settings", mean over channels) is torchvision's roi_align of the box shown on the real map
    fig = figure(at, "overview")
    z = array(fig["data"][1]["z"])[:7, :7]
    box = torch.tensor([[0.0, *[at.session_state[K.BOXES][0][k] for k in ("x1", "y1", "x2", "y2")]]])
    fmap = c.fpn[str(level)]
    want = torchvision.ops.roi_align(fmap, box, 7, spatial_scale=1 / 2 ** (level + 2), sampling_ratio=2,
                                     aligned=False)[0].mean(0)  # [7, 7]
    np.testing.assert_allclose(z, want.numpy(), rtol=1e-4, atol=1e-5)


def test_every_page_runs_on_a_capture_and_diagnose_starts_from_the_call(tmp_path):
    c = captures()
    at = open_capture(make_app("image"), c.full)
    n = len(at.session_state[K.BOXES])
    visit_every_page(at)
    at.switch_page(PAGES["diagnose"]).run()
    (expander,) = [e for e in at.expander if e.label.startswith("Recorded with the capture: call #0")]
    assert "SUBCELL_ROI" in " ".join(texts(at.info))
    level = at.session_state[K.CAPTURE_LEVEL]
    shape = parsed(c.full, tmp_path).calls[0].level_shapes[level]
    assert at.text_input(key="diag_scale").value == f"1/{2 ** (level + 2)}"
    assert at.text_input(key="diag_feature_shape").value == f"1, {shape[1]}, {shape[2]}, {shape[3]}"
    assert at.text_input(key="diag_image_size").value == "128, 192"
    assert at.text_area(key="diag_boxes").value.count("[0., ") == n  # every box of the table, as rois
    assert any("on your captured map, with the call's output size 7, sampling_ratio 2 and aligned=False" in t
               for t in texts(at.caption))
    at.button(key="diag_reproduce").click().run()
    no_exception(at)
    shown = " ".join(texts(at.markdown))
    assert "**torchvision.ops.roi_align**: ran" in shown and "**roi_lab.roi_align**: ran" in shown
    at.switch_page(PAGES["parity"]).run()
    at.button(key="parity_run").click().run()
    no_exception(at)
    rows = at.session_state["parity_results"]["rows"]
    assert rows[0]["case"].startswith("current: your model's call #0")


def test_the_level_picker_and_the_toggle_choose_the_map_and_the_boxes(tmp_path):
    c = captures()
    call = parsed(c.full, tmp_path).calls[0]
    at = open_capture(make_app("image"), c.full)
    other = next(i for i, n in enumerate(call.level_counts()) if n and i != at.session_state[K.CAPTURE_LEVEL])
    at.selectbox(key=widget_key(K.CAPTURE_LEVEL)).set_value(other).run()
    no_exception(at)
    np.testing.assert_array_equal(coords(at.session_state[K.BOXES]), call.boxes[0][call.levels == other].double())
    assert metrics(at)["Feature map"] == f"{list(call.level_shapes[other])}"
    at.toggle(key=widget_key(K.CAPTURE_ONLY_LEVEL)).set_value(False).run()  # every box of the image on this map
    no_exception(at)
    np.testing.assert_array_equal(coords(at.session_state[K.BOXES]), call.boxes[0].double())
    labels = [r["label"] for r in at.session_state[K.BOXES]]
    assert {lab.split(" L")[1] for lab in labels} == {call.level_names[i] for i in set(call.levels.tolist())}


def test_a_browser_refresh_keeps_the_capture_and_its_view():
    c = captures()
    at = open_capture(make_app("image"), c.full, "frcnn.pt")
    at.toggle(key=widget_key(K.CAPTURE_ONLY_LEVEL)).set_value(False).run()
    token = at.query_params["session"]
    token = token[0] if isinstance(token, list) else token
    again = make_app(query={"session": token})
    no_exception(again)
    ss = again.session_state
    assert (ss[K.SOURCE], ss[K.CAPTURE_NAME], ss[K.CAPTURE_HASH]) == ("capture", "frcnn.pt", at.session_state[
        K.CAPTURE_HASH])
    assert ss[K.CAPTURE_ONLY_LEVEL] is False and ss[K.ALIGNED] is False
    np.testing.assert_array_equal(coords(ss[K.BOXES]), coords(at.session_state[K.BOXES]))
    assert [t.value for t in again.subheader] == ["Capture: frcnn.pt"]


def test_the_session_store_counts_capture_files_in_its_memory_bound():
    from roi_lab.ui.persist import Store

    store = Store(max_sessions=10, max_bytes=100)
    store.put("a", {"image_bytes": b"x" * 10})
    store.put("b", {"image_bytes": b"x" * 10, "capture_bytes": b"c" * 85})  # 95 bytes with its image
    assert store.get("a") is None and store.get("b") is not None  # 105 > 100: the oldest went


def test_leaving_the_capture_brings_back_the_samples_boxes_and_the_users_own_boxes_are_never_replaced():
    c = captures()
    at = make_app("image")
    sample_boxes = coords(at.session_state[K.BOXES])
    open_capture(at, c.full)
    at.radio(key=widget_key(K.SOURCE)).set_value("sample").run()
    no_exception(at)
    np.testing.assert_array_equal(coords(at.session_state[K.BOXES]), sample_boxes)
    # the user's own boxes stay when a capture is opened: its boxes are offered instead
    at.session_state[K.BOXES_ORIGIN] = "user"
    at.run()
    open_capture(at, c.full, "again.pt")
    np.testing.assert_array_equal(coords(at.session_state[K.BOXES]), sample_boxes)
    assert at.session_state[K.BOX_OFFER]["label"].startswith("Replace my ")
    at.button(key="accept_box_offer").click().run()
    assert at.session_state[K.BOXES_ORIGIN].startswith("capture:")


# ------------------------------------------------------------------------------------------------ keep_features=False
def test_a_capture_without_features_or_image_says_what_is_missing_and_shows_the_rest(tmp_path):
    c = captures()
    call = parsed(c.light, tmp_path).calls[0]
    at = open_capture(make_app("image"), c.light, "light.pt")
    warnings = texts(at.warning)
    assert any(w.startswith("No feature maps") and "roi_lab.capture(keep_features=True)" in w for w in warnings)
    assert any(w.startswith("No image") and "keep_features=True" in w for w in warnings)
    # what can be shown is: the boxes (in the table), the findings, the geometry against the recorded map shape
    level = at.session_state[K.CAPTURE_LEVEL]
    np.testing.assert_array_equal(coords(at.session_state[K.BOXES]), call.boxes[0][call.levels == level].double())
    assert any("SUBCELL_ROI" in t for t in texts(at.info))
    m = metrics(at)
    assert m["Feature map"] == f"{list(call.level_shapes[level])}" and m["Nominal stride"] == str(2 ** (level + 2))
    (img,) = at.get("image")
    assert "no image in the capture: a blank 192 x 128 canvas" in img.captions[0]
    fig = figure(at, "feature_summary_chart")
    assert "shape only (not kept)" in fig["layout"]["title"]["text"]
    assert array(fig["data"][0]["z"]).shape == tuple(call.level_shapes[level][-2:])
    # Side by side needs the map: it says so, with how to get it, and no traceback
    at.switch_page(PAGES["side"]).run()
    no_exception(at)
    (error,) = texts(at.error)
    assert error.startswith("This capture holds no feature map for this view")
    assert "keep_features=True" in error
    visit_every_page(at)
    at.switch_page(PAGES["diagnose"]).run()
    assert any("the map was not kept, so the reproduction runs on a random map" in t for t in texts(at.caption))


# ------------------------------------------------------------------------------------------------ an injected bug
def test_the_injected_image_space_bug_is_shown_with_its_finding_and_its_panel():
    c = captures()
    at = open_capture(make_app("image"), c.buggy, "buggy.pt")
    (error,) = [t for t in texts(at.error) if "IMAGE_SPACE_BOXES" in t]
    assert "spatial_scale is 1" in error
    assert "spatial_scale=1 / 16" in " ".join(c.value for c in at.code)  # the finding's fix
    assert metrics(at)["spatial_scale of the call"] == "1" and metrics(at)["Nominal stride"] == "16"
    assert any('that is the panel "Image-space boxes, spatial_scale=1"' in t for t in texts(at.info))
    at.switch_page(PAGES["side"]).run()
    no_exception(at)
    assert 'that is the panel "Image-space boxes, spatial_scale=1"' in texts(at.caption)[0]
    at.switch_page(PAGES["diagnose"]).run()
    assert at.text_input(key="diag_scale").value == "1"
    findings = [t for t in texts(at.error) if t.startswith("**IMAGE_SPACE_BOXES**")]
    assert len(findings) == 2  # the recorded one, and the form's on the table's boxes with the call's scale
    visit_every_page(at)


# ------------------------------------------------------------------------------------------------ refused files
@pytest.mark.parametrize(
    "name, data, message",
    [
        ("notes.pt", b"hello, not a capture", "not a torch.save zip archive"),
        ("empty.pt", b"", "not a torch.save zip archive"),
        ("evil.pt", hostile_pickle(), "torch.load(weights_only=True) refused it"),
    ],
)
def test_a_broken_or_hostile_file_is_a_message_and_the_session_keeps_its_state(name, data, message):
    at = make_app("image")
    before = {k: at.session_state[k] for k in (K.IMAGE_HASH, K.BOXES_REV, K.OUTPUT_SIZE, K.ALIGNED)}
    open_capture(at, data, name)
    (error,) = texts(at.error)
    assert error.startswith("That capture file was refused. The current image (")
    assert f"{name}: load_capture({name!r}) expects a capture file written by Capture.save" in error
    assert message in error
    assert {k: at.session_state[k] for k in before} == before and at.session_state[K.CAPTURE_BYTES] is None
    # a good file still opens afterwards, and a bad one then keeps it
    open_capture(at, captures().full, "good.pt")
    assert at.session_state[K.CAPTURE_NAME] == "good.pt" and not at.error
    open_capture(at, data, name + ".again")
    (error,) = texts(at.error)
    assert error.startswith("That capture file was refused. The current capture (good.pt) is kept.")
    assert at.session_state[K.CAPTURE_NAME] == "good.pt"
    visit_every_page(at)


def test_a_torch_file_that_is_not_a_capture_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    at = open_capture(make_app("image"), path.read_bytes(), "weights.pt")
    (error,) = texts(at.error)
    assert "expects a capture file written by Capture.save" in error and "format None version None" in error


def test_an_oversized_file_is_refused_before_it_is_read(monkeypatch):
    monkeypatch.setenv("ROI_LAB_CAPTURE_MAX_MB", "1")
    data = captures().full  # ~2.4 MB
    at = open_capture(make_app("image"), data, "big.pt")
    (error,) = texts(at.error)
    assert "big.pt: the app's capture intake ('big.pt') expects a capture file of at most 1 MiB (the app's limit, " \
           "ROI_LAB_CAPTURE_MAX_MB); got a file of 2." in error
    assert "max_bytes=100 << 20" in error and at.session_state[K.CAPTURE_BYTES] is None
    visit_every_page(at)
