"""`cityeye models info|export`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

from cityeye.cli import UsageError
from cityeye.models import cli as models_cli
from cityeye.models.registry import DEFAULT_MODEL, ModelError
from tests.conftest import shared_path


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cityeye")
    models_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["models", *argv])


def _documented_sha256() -> str:
    text = (DEFAULT_MODEL.parent / "SOURCES.md").read_text()
    m = re.search(r"\| sha256 \| `([0-9a-f]{64})` \|", text)
    assert m, "models/weights/SOURCES.md must state the sha256 of the shipped model"
    return m.group(1)


def test_info_of_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("info", str(DEFAULT_MODEL))
    assert args.func(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sha256"] == _documented_sha256()
    assert info["size"] == DEFAULT_MODEL.stat().st_size
    assert info["inputs"] == [{"name": "images", "shape": [1, 3, 640, 640], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "output0", "shape": [1, 84, 8400], "dtype": "float32"}]
    assert "'car'" in info["metadata_props"]["names"] and "AGPL" in info["metadata_props"]["license"]
    assert info["decoder"] == "ultralytics"
    if _onnx_importable():
        assert info["opset"] == 12
    else:
        assert "opset" not in info


def _onnx_importable() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def test_info_without_onnx_omits_opset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    info = models_cli.model_info(shared_path("models", "yolox_nano.onnx"))
    assert "opset" not in info
    assert info["metadata_props"] == {} and info["decoder"] == "yolox"
    assert info["outputs"][0]["shape"] == [1, 3549, 85]


def test_info_of_missing_model(tmp_path: Path) -> None:
    args = _parse("info", str(tmp_path / "x.onnx"))
    with pytest.raises(ModelError, match="does not exist"):
        args.func(args)


def test_export_without_ultralytics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    args = _parse("export", "yolo11n", "--imgsz", "320", "--out", str(tmp_path))
    assert (args.source, args.imgsz, args.dynamic, args.out) == ("yolo11n", 320, False, tmp_path)
    with pytest.raises(ModelError, match=re.escape("pip install 'cityeye[export]'")):
        args.func(args)
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_bad_input(tmp_path: Path) -> None:
    args = _parse("export", str(tmp_path / "weights" / "mine.pt"))
    with pytest.raises(UsageError, match="does not exist"):
        args.func(args)
    args = _parse("export", "yolo11n", "--imgsz", "300")
    with pytest.raises(UsageError, match="multiple of 32"):
        args.func(args)


def test_models_needs_a_subcommand() -> None:
    with pytest.raises(SystemExit):
        _parse()
