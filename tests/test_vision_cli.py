"""`cityeye detect`: the JSON-lines contract, errors for unreadable images, the human table."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cityeye.cli import COMMAND_MODULES, UsageError
from cityeye.models.registry import ENV_MODEL
from cityeye.vision import cli as vision_cli
from tests.conftest import shared_path

CONTRACT_KEYS = {"image", "width", "height", "detections"}
DETECTION_KEYS = {"xyxy", "confidence", "class_id", "label"}


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cityeye")
    vision_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["detect", *argv])


def _frames(n: int) -> list[str]:
    return [
        str(shared_path("data", "traffic", "detrac_MVI_20011", "images", f"img0000{i}.jpg")) for i in (1, 2)
    ][:n]


def _check_line(obj: dict[str, Any], image: str) -> None:
    assert set(obj) == CONTRACT_KEYS
    assert obj["image"] == image and (obj["width"], obj["height"]) == (960, 540)
    assert obj["detections"], "the DETRAC frame has cars"
    for d in obj["detections"]:
        assert set(d) == DETECTION_KEYS
        x1, y1, x2, y2 = d["xyxy"]
        assert 0 <= x1 < x2 <= 960 and 0 <= y1 < y2 <= 540
        assert all(round(v, 2) == v for v in d["xyxy"])
        assert 0.25 < d["confidence"] <= 1 and round(d["confidence"], 4) == d["confidence"]
        assert isinstance(d["class_id"], int) and isinstance(d["label"], str)
    labels = {d["label"] for d in obj["detections"]}
    assert "car" in labels and "person" in labels  # all classes, not only vehicles


@pytest.fixture(autouse=True)
def _default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MODEL, raising=False)


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    images = _frames(2)
    assert vision_cli.run_detect(_parse(*images, "--json")) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, images, strict=True):
        _check_line(json.loads(line), image)
    assert "2/2" in err  # tqdm progress on stderr for more than one image


def test_conf_option_filters(capsys: pytest.CaptureFixture[str]) -> None:
    vision_cli.run_detect(_parse(*_frames(1), "--json"))
    default = json.loads(capsys.readouterr().out)["detections"]
    vision_cli.run_detect(_parse(*_frames(1), "--json", "--conf", "0.6"))
    strict = json.loads(capsys.readouterr().out)["detections"]
    assert 0 < len(strict) < len(default)
    assert all(d["confidence"] > 0.6 for d in strict)


def test_unreadable_images_reported_after_readable_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    missing = tmp_path / "missing.png"
    with pytest.raises(UsageError) as exc:
        vision_cli.run_detect(_parse(str(junk), *_frames(1), str(missing), "--json"))
    assert str(junk) in str(exc.value) and str(missing) in str(exc.value)
    assert "no such file" in str(exc.value) and "decode" in str(exc.value)
    assert len(capsys.readouterr().out.splitlines()) == 1  # the readable image was still processed


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--conf"):
        vision_cli.run_detect(_parse(*_frames(1), "--conf", "1.5"))


def test_human_table(capsys: pytest.CaptureFixture[str]) -> None:
    vision_cli.run_detect(_parse(*_frames(1)))
    out, err = capsys.readouterr()
    first, *rows = out.splitlines()
    assert first.endswith(f"960x540  {len(rows)} detections")
    assert any(r.split()[0] == "car" for r in rows)
    assert err == ""  # no progress bar for a single image


def test_subprocess_contract(tmp_path: Path) -> None:
    missing = [m for m in COMMAND_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"`cityeye` cannot start until these command modules exist: {missing}")
    images = _frames(2)
    env = {k: v for k, v in os.environ.items() if k != ENV_MODEL}
    # cwd outside the repository so the installed package, not the source folders, is imported
    proc = subprocess.run(
        [sys.executable, "-m", "cityeye", "detect", *images, "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, images, strict=True):
        _check_line(json.loads(line), image)

    bad = subprocess.run(
        [sys.executable, "-m", "cityeye", "detect", str(tmp_path / "nope.jpg"), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2
    assert "nope.jpg" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""
