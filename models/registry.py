"""Which ONNX file the detector loads, and a cheap check that it really is one.

Every way of naming a model (argument, config, environment, the shipped default) goes through
`resolve_model_path`, so a wrong path fails at start-up with one message that says how to get a
working model, instead of as an onnxruntime traceback deep inside a camera worker.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import onnxruntime as ort

ENV_MODEL = "CITYEYE_MODEL"
DEFAULT_MODEL = Path(__file__).parent / "weights" / "yolov8n_dq.onnx"

HOW_TO_GET_A_MODEL = (
    "To get a working model: use the shipped default (unset $CITYEYE_MODEL and give no --model or "
    "model.path), copy one of ../shared/models/*.onnx, or install the export extra: "
    "pip install 'cityeye[export]' and run `cityeye models export yolo11n`."
)


class ModelError(Exception):
    """A model file that is missing, broken or of a layout cityeye cannot decode."""


def resolve_model_path(path: str | Path | None = None) -> Path:
    """The model to load: `path`, else $CITYEYE_MODEL, else the shipped default.

    The file is checked to be a complete ONNX protobuf (cheap: a few reads, no graph load), so a
    truncated download or a wrong file fails here with a how-to instead of later in onnxruntime.
    """
    if path is not None and str(path) != "":
        source = "given path"
        p = Path(path).expanduser()
    elif os.environ.get(ENV_MODEL):
        source = f"${ENV_MODEL}"
        p = Path(os.environ[ENV_MODEL]).expanduser()
    else:
        source = "shipped default model"
        p = DEFAULT_MODEL
    if not p.exists():
        raise ModelError(f"model file {p} ({source}) does not exist. {HOW_TO_GET_A_MODEL}")
    if not p.is_file():
        raise ModelError(f"model path {p} ({source}) is not a file. {HOW_TO_GET_A_MODEL}")
    problem = onnx_file_problem(p)
    if problem is not None:
        raise ModelError(
            f"model file {p} ({source}) is not a loadable ONNX model: {problem}. {HOW_TO_GET_A_MODEL}"
        )
    return p


def _read_varint(f: BinaryIO) -> int | None:
    result = 0
    for shift in range(0, 70, 7):
        b = f.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
    return None


# ModelProto field numbers (onnx.proto3): 1 ir_version, 7 graph.
_IR_VERSION, _GRAPH = 1, 7


def onnx_file_problem(path: Path) -> str | None:
    """Why `path` is not a well-formed ONNX ModelProto, or None if it is.

    Walks only the top-level protobuf fields (about ten, the graph is skipped by its length), so it
    catches empty, truncated and non-ONNX files in microseconds without needing the onnx package.
    """
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    seen: set[int] = set()
    with path.open("rb") as f:
        while f.tell() < size:
            tag = _read_varint(f)
            if tag is None or tag >> 3 == 0:
                return "it is not a protobuf file (bad field tag)"
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                if _read_varint(f) is None:
                    return "it is truncated"
            elif wire == 1:
                f.seek(8, os.SEEK_CUR)
            elif wire == 2:
                length = _read_varint(f)
                if length is None:
                    return "it is truncated"
                f.seek(length, os.SEEK_CUR)
            elif wire == 5:
                f.seek(4, os.SEEK_CUR)
            else:
                return "it is not a protobuf file (bad wire type)"
            if f.tell() > size:
                return f"it is truncated ({size} bytes, a field runs past the end)"
            seen.add(field)
    if _IR_VERSION not in seen or _GRAPH not in seen:
        return "it has no ONNX graph (not an ONNX ModelProto)"
    return None


def open_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU onnxruntime session with full graph optimisation; load failures become ModelError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initialisers etc. would clutter CLI stderr
    if threads > 0:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types, not a common base
        raise ModelError(f"onnxruntime cannot load {path}: {exc}. {HOW_TO_GET_A_MODEL}") from exc


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
