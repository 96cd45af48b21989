"""Which ONNX file the detector loads, and a cheap check that it really is one.

Every way of naming a model (argument, config, environment, the shipped default) goes through
`resolve_model_path`, so a wrong path fails at start-up with one message that says how to get a
working model, instead of as an onnxruntime traceback deep inside a camera worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

log = logging.getLogger(__name__)
T = TypeVar("T")

ENV_MODEL = "CITYEYE_MODEL"
ENV_MODEL_CACHE = "CITYEYE_MODEL_CACHE"
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
        if not p.exists() and len(p.parts) == 1:
            cached = cache_dir() / (p.name if p.suffix == ".onnx" else f"{p.name}.onnx")
            if cached.exists():
                source, p = "model cache", cached
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


PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}
# `auto` preference: the fastest provider that is installed; CPU always closes the list.
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider")
_OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """onnxruntime session options a site may tune; the defaults suit a small CPU edge box."""

    intra_threads: int = 0
    """0 = onnxruntime's default (one per physical core)."""
    inter_threads: int = 0
    graph_optimization: str = "all"
    parallel: bool = False
    providers: tuple[str, ...] = ("cpu",)
    stop_spinning: bool = True
    """Worker threads stop busy-waiting when a run returns (``session.force_spinning_stop``).

    They still spin between the operators of a run, which is what makes it fast; after it, the
    spinning only takes a core from the frame's own pre/post-processing and decoding (measured:
    ~0.15 ms per frame, session run time unchanged) and burns CPU on an edge box between frames.
    """


def resolve_providers(wanted: tuple[str, ...] | list[str]) -> list[str]:
    """onnxruntime provider names for `wanted`, failing early with the installed ones listed.

    A provider named in the configuration but missing would otherwise silently fall back to CPU
    inside onnxruntime, and a site would run ten times slower than it planned for.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    out: list[str] = []
    for name in wanted:
        if name.lower() == "auto":
            out += [p for p in _AUTO_ORDER if p in available and p not in out]
            continue
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            raise ModelError(
                f"execution provider {name!r} ({full}) is not installed; installed: {', '.join(available)}. "
                "Install the matching onnxruntime package (onnxruntime-gpu, onnxruntime-openvino) or use "
                "providers: [cpu] (or [auto])"
            )
        if full not in out:
            out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")  # operators a GPU provider lacks still run
    return out


def open_session(path: Path, threads: int | SessionSettings = 0) -> ort.InferenceSession:
    """An onnxruntime session with the given settings; load failures become ModelError."""
    import onnxruntime as ort

    settings = threads if isinstance(threads, SessionSettings) else SessionSettings(intra_threads=threads)
    if settings.graph_optimization not in _OPT_LEVELS:
        raise ModelError(
            f"graph_optimization must be one of {_OPT_LEVELS}, got {settings.graph_optimization!r}"
        )
    level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.graph_optimization]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.log_severity_level = 3  # warnings about unused initialisers etc. would clutter CLI stderr
    if settings.intra_threads > 0:
        opts.intra_op_num_threads = settings.intra_threads
    if settings.inter_threads > 0:
        opts.inter_op_num_threads = settings.inter_threads
    if settings.parallel:
        opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if settings.stop_spinning:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    providers = resolve_providers(settings.providers)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types, not a common base
        raise ModelError(f"onnxruntime cannot load {path}: {exc}. {HOW_TO_GET_A_MODEL}") from exc


def cache_dir() -> Path:
    """Where generated models (reshaped, quantised) live: $CITYEYE_MODEL_CACHE, else ~/.cache/cityeye/models.

    Derived models are named after their source and settings, so a site config can refer to one by
    name (`model.path: yolov8n_dq_b-dyn_384x640`) and every edge box re-creates the same file.
    """
    env = os.environ.get(ENV_MODEL_CACHE)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "cityeye" / "models"
    return base


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checked(model: onnx.ModelProto, out: Path, check: Callable[[Path], T]) -> T:
    """Write an edited graph to `out` only once `check(candidate_path)` passed; its result.

    The candidate has a per-process name, so workers deriving the same copy do not collide, and a
    failed check (any exception, re-raised) leaves nothing behind for a later start to pick up.
    """
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    try:
        result = check(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return result


def cached_copy(source: Path, tag: str, make: Callable[[Path, Path], object], what: str) -> Path:
    """The model-cache copy of `source` named `<stem>-<content hash>_<tag>.onnx`, made once by `make`.

    The content hash in the name means a replaced model file never picks up a stale copy, and every
    edge box with the same file and settings derives the same one.
    """
    out = cache_dir() / f"{source.stem}-{sha256_file(source)[:12]}_{tag}.onnx"
    if not out.exists():
        log.info("deriving %s from %s (%s, checked against the original)", out.name, source, what)
        make(source, out)
    return out


def sessions_to_compare(
    source: Path, candidate: Path, default_hw: tuple[int, int]
) -> tuple[ort.InferenceSession, ort.InferenceSession, Any, tuple[int, int]]:
    """The original's and an edited copy's sessions, the original's input and the size to feed it.

    `default_hw` stands in for a spatially dynamic input.
    """
    orig = open_session(source, SessionSettings())
    edit = open_session(candidate, SessionSettings())
    inp = orig.get_inputs()[0]
    h, w = inp.shape[2], inp.shape[3]
    return orig, edit, inp, (h, w) if isinstance(h, int) and isinstance(w, int) else default_hw


def load_graph(source: Path) -> onnx.ModelProto | None:
    """The graph of `source` for a derived copy's applicability test; None without onnx or for a file
    onnx cannot parse (the session load then reports what is wrong with it)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        return onnx.load(str(source), load_external_data=False)
    except Exception:  # onnx raises protobuf's DecodeError and others, no common base
        return None


def load_if_quantised(source: Path) -> onnx.ModelProto | None:
    """The graph of `source` when it has QuantizeLinear nodes and onnx is installed, else None.

    Operator types are plain strings in the protobuf, so a byte search rules out float models
    without parsing them.
    """
    with source.open("rb") as f:
        if b"QuantizeLinear" not in f.read():
            return None
    return load_graph(source)
