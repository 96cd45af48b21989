"""Model path resolution and the errors a wrong model file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityeye.models.registry import (
    DEFAULT_MODEL,
    ENV_MODEL,
    ModelError,
    onnx_file_problem,
    resolve_model_path,
)
from cityeye.vision.detector import Detector
from tests.conftest import shared_path

HOW_TO = ("pip install 'cityeye[export]'", "cityeye models export yolo11n", "../shared/models")


def _assert_how_to(exc: pytest.ExceptionInfo[ModelError]) -> None:
    for text in HOW_TO:
        assert text in str(exc.value)


def test_default_then_env_then_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MODEL, raising=False)
    assert resolve_model_path(None) == DEFAULT_MODEL
    other = shared_path("models", "yolox_nano.onnx")
    monkeypatch.setenv(ENV_MODEL, str(other))
    assert resolve_model_path(None) == other
    assert resolve_model_path(DEFAULT_MODEL) == DEFAULT_MODEL


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="does not exist") as exc:
        resolve_model_path(tmp_path / "nope.onnx")
    _assert_how_to(exc)
    monkeypatch.setenv(ENV_MODEL, str(tmp_path / "gone.onnx"))
    with pytest.raises(ModelError, match=r"\$CITYEYE_MODEL") as exc:
        Detector()
    _assert_how_to(exc)
    with pytest.raises(ModelError, match="not a file"):
        resolve_model_path(tmp_path)


def _corrupt(kind: str) -> bytes:
    real = DEFAULT_MODEL.read_bytes()
    return {
        "empty": b"",
        "text": b"hello, this is not a model\n",
        "first MiB": real[: 1 << 20],
        "last byte cut": real[:-1],
        "binary junk": bytes(range(256)) * 8,
    }[kind]


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("empty", "empty"),
        ("text", "not a protobuf"),
        ("first MiB", "truncated"),
        ("last byte cut", "truncated"),
        ("binary junk", "not a protobuf"),
    ],
)
def test_corrupt_file(tmp_path: Path, kind: str, why: str) -> None:
    p = tmp_path / "broken.onnx"
    p.write_bytes(_corrupt(kind))
    with pytest.raises(ModelError, match=why) as exc:
        resolve_model_path(p)
    _assert_how_to(exc)
    with pytest.raises(ModelError):
        Detector(p)


def test_well_formed_protobuf_that_onnxruntime_rejects(tmp_path: Path) -> None:
    # ir_version = 7 and a "graph" field holding garbage: passes the cheap check, fails in onnxruntime.
    p = tmp_path / "fake.onnx"
    p.write_bytes(b"\x08\x07" + b"\x3a\x03abc")
    assert onnx_file_problem(p) is None
    with pytest.raises(ModelError, match="onnxruntime cannot load") as exc:
        Detector(p)
    _assert_how_to(exc)


def test_shared_models_pass_the_file_check() -> None:
    for p in sorted(shared_path("models").glob("*.onnx")):
        assert onnx_file_problem(p) is None, p
