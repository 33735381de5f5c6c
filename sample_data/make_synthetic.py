"""Regenerate the synthetic scene: ``python sample_data/make_synthetic.py [FOLDER]``.

Writes ``synthetic_scene.png`` and ``synthetic_scene.json`` (roi_lab JSON boxes: xyxy, image pixels,
pixel-corner coordinates) into FOLDER, by default this folder. The drawing code lives in
:func:`roi_lab.samples.make_synthetic_scene` so the app and the tests use the same generator;
``tests/test_samples.py`` regenerates the scene and compares it with the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from roi_lab.samples import write_synthetic_scene


def main(argv: list[str]) -> None:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    png, js = write_synthetic_scene(folder)
    print(f"wrote {png} ({png.stat().st_size:,} bytes) and {js}")


if __name__ == "__main__":
    main(sys.argv)
