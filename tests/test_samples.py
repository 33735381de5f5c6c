"""Bundled samples: the catalogue, the photos' sizes, and the synthetic scene's exact boxes.

Oracles: the sizes scikit-image documents for its photos, and the boxes recomputed here from the
PNG's pixels alone (each shape has a unique non-gray colour on a gray background).
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from roi_lab.errors import InputValueError
from roi_lab.samples import list_samples, load_sample, make_synthetic_scene, sample_dir

DATA = Path(__file__).resolve().parent.parent / "sample_data"


def test_catalogue():
    samples = list_samples()
    assert [s.name for s in samples] == ["synthetic", "astronaut", "coffee", "chelsea"]
    licences = {s.name: s.licence for s in samples}
    assert licences["astronaut"].startswith("Public domain: NASA")
    assert licences["coffee"].startswith("CC0") and licences["chelsea"].startswith("CC0")
    assert licences["synthetic"].startswith("CC0")
    for s in samples:
        assert s.path.is_file() and s.path.parent == DATA
        assert s.title
        assert s.exact_boxes == (s.name == "synthetic")
        assert s.boxes_image.shape == (len(s.labels), 4) and s.boxes_image.dtype == torch.float32


@pytest.mark.parametrize("name, shape", [("astronaut", (512, 512, 3)), ("coffee", (400, 600, 3)),
                                         ("chelsea", (300, 451, 3))])
def test_photos_have_the_sizes_scikit_image_documents(name, shape):
    image, sample = load_sample(name)
    assert image.shape == shape and image.dtype == np.uint8
    assert sample.name == name and sample.labels
    assert image.std() > 20  # a photo, not a blank
    b = sample.boxes_image
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= shape[1]).all() and (b[:, 3] <= shape[0]).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def _boxes_from_pixels(image: np.ndarray) -> dict[tuple[int, int, int], list[int]]:
    """Tight xyxy box (pixel corners, exclusive ends) of every non-gray colour in the image."""
    colored = ~((image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2]))
    ys, xs = np.nonzero(colored)
    colors = image[ys, xs]
    out = {}
    for color in np.unique(colors, axis=0):
        sel = (colors == color).all(1)
        out[tuple(int(c) for c in color)] = [int(xs[sel].min()), int(ys[sel].min()), int(xs[sel].max()) + 1,
                                             int(ys[sel].max()) + 1]
    return out


def test_synthetic_boxes_match_the_pixels():
    image, sample = load_sample("synthetic")
    assert image.shape == (450, 600, 3)
    assert 600 % 32 and 450 % 32 and 450 % 16  # not divisible, on purpose
    from_pixels = _boxes_from_pixels(image)
    assert len(from_pixels) == len(sample.labels) == 8
    assert sorted(from_pixels.values()) == sorted(sample.boxes_image.int().tolist())
    # each labelled box holds exactly one shape colour, and it fills the box's edges
    for box in sample.boxes_image.int().tolist():
        x1, y1, x2, y2 = box
        crop = image[y1:y2, x1:x2]
        colored = ~((crop[..., 0] == crop[..., 1]) & (crop[..., 1] == crop[..., 2]))
        assert colored[0].any() and colored[-1].any() and colored[:, 0].any() and colored[:, -1].any()


def test_synthetic_labels_and_json_format():
    doc = json.loads((DATA / "synthetic_scene.json").read_text())
    assert set(doc) == {"format", "space", "boxes", "labels"}
    assert doc["format"] == "xyxy" and doc["space"] == "image"
    assert doc["labels"] == ["square", "circle", "triangle", "ellipse", "bar", "ring", "small_square", "corner_box"]
    assert doc["boxes"][0] == [60, 50, 180, 170]  # cv2.rectangle((60, 50), (179, 169)) fills 120 x 120 px
    assert doc["boxes"][6] == [480, 300, 492, 312]  # the 12 x 12 px square
    assert doc["boxes"][7][2:] == [600, 450]  # touches the far corner


def assert_same_scene(generated: np.ndarray, committed: np.ndarray) -> None:
    """The generator against the committed PNG. The shapes are integer drawing (exact everywhere); the
    background texture goes through cv2.resize(INTER_CUBIC) in float32, whose SIMD path (FMA or not)
    depends on the CPU, and a value within an ulp of .5 can then round the other way. So: at most one
    gray level apart, on at most 0.1% of the pixels."""
    assert generated.shape == committed.shape and generated.dtype == committed.dtype == np.uint8
    diff = np.abs(generated.astype(np.int16) - committed.astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= generated.size // 1000


def test_committed_scene_equals_the_generator():
    image, boxes_image, labels = make_synthetic_scene()
    committed, sample = load_sample("synthetic")
    assert_same_scene(image, committed)
    assert boxes_image.tolist() == sample.boxes_image.tolist()
    assert labels == sample.labels


def test_generator_script_writes_the_same_files(tmp_path):
    script = runpy.run_path(str(DATA / "make_synthetic.py"), run_name="generator")
    script["main"](["make_synthetic.py", str(tmp_path)])
    assert (tmp_path / "synthetic_scene.json").read_text() == (DATA / "synthetic_scene.json").read_text()
    from roi_lab.image import decode_image

    assert_same_scene(decode_image((tmp_path / "synthetic_scene.png").read_bytes()),
                      decode_image((DATA / "synthetic_scene.png").read_bytes()))


def test_synthetic_is_available_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("ROI_LAB_SAMPLE_DIR", str(tmp_path))
    assert sample_dir() == tmp_path
    assert [s.name for s in list_samples()] == ["synthetic"]
    image, sample = load_sample("synthetic")
    assert image.shape == (450, 600, 3) and sample.boxes_image.shape == (8, 4)


def test_unknown_sample():
    with pytest.raises(InputValueError) as info:
        load_sample("lena")
    assert str(info.value) == (
        "load_sample(name=...) expects one of synthetic, astronaut, coffee, chelsea; got str 'lena'.\n"
        "Fix: e.g. load_sample('synthetic')"
    )


def test_sample_folder_is_small_and_documented():
    files = [p for p in DATA.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2_000_000
    readme = (DATA / "README.md").read_text()
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "synthetic_scene.png", "synthetic_scene.json"):
        assert name in readme
    assert "No known copyright restrictions, released into the public domain." in readme
    assert readme.count("CC0 by the photographer") == 2
