"""A plain wheel carries every subpackage under `cityeye`, the default model and the demo sample,
and no generic top-level names (`api`, `models`, ...) that would collide in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_contents(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("cityeye-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"cityeye", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for needed in (
        "cityeye/cli.py",
        "cityeye/config.py",
        "cityeye/events/schema.py",
        "cityeye/vision/detector.py",
        "cityeye/zones/occupancy.py",
        "cityeye/api/app.py",
        "cityeye/edge/worker.py",
        "cityeye/streams/sources.py",
        "cityeye/models/weights/yolov8n_dq.onnx",
        "cityeye/samples/pucpr/zones.geojson",
        "cityeye/samples/pucpr/calibration.json",
        "cityeye/samples/SOURCES.md",
        "cityeye/py.typed",
    ):
        assert needed in names, f"{needed} missing from {wheel.name}"
    assert sum(n.startswith("cityeye/samples/pucpr/frames/") for n in names) == 4
    assert any(n.endswith("licenses/LICENSE") for n in names)
