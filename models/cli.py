"""`cityeye models info|export`: inspect an ONNX file, or make one from Ultralytics weights.

`export` is the only place cityeye touches ultralytics (and torch): it is imported lazily so the
edge install stays small, and its absence is reported with the command that installs it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from cityeye.cli import UsageError
from cityeye.models.registry import (
    ModelError,
    open_session,
    resolve_model_path,
    sha256_file,
)

# onnxruntime type strings -> numpy dtype names, which is what people compare against.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="inspect or export ONNX detector models",
                       description="Inspect ONNX models or export Ultralytics weights to ONNX.")
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)

    info = msub.add_parser("info", help="print a model's inputs, outputs, metadata and sha256 as JSON")
    info.add_argument("model", metavar="M.onnx", help="ONNX model file")
    info.set_defaults(func=run_info)

    exp = msub.add_parser(
        "export",
        help="export Ultralytics weights to ONNX (needs: pip install 'cityeye[export]')",
        description="Export a YOLO model to ONNX with ultralytics. A NAME such as yolo11n is fetched by "
        "ultralytics from its release page (needs network); a local .pt file is used as is.",
    )
    exp.add_argument("source", metavar="NAME|PATH.pt", help="model name (yolo11n, yolov8n, ...) or .pt file")
    exp.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    exp.add_argument("--dynamic", action="store_true", help="dynamic input size and batch axes")
    exp.add_argument("--out", type=Path, default=Path(), help="directory for the .onnx file (default: .)")
    exp.set_defaults(func=run_export)


def _io(args: list[Any]) -> list[dict[str, Any]]:
    return [{"name": a.name, "shape": list(a.shape), "dtype": _ORT_DTYPES.get(a.type, a.type)} for a in args]


def model_info(path: Path) -> dict[str, Any]:
    """What `models info` prints: enough to tell two model files and their layouts apart."""
    from cityeye.vision.decoders import select_decoder

    session = open_session(path)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    info: dict[str, Any] = {
        "path": str(path),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "inputs": _io(session.get_inputs()),
        "outputs": _io(session.get_outputs()),
        "metadata_props": meta,
    }
    try:
        import onnx
    except ImportError:
        pass  # opset is only available through the onnx package; omit it rather than guess
    else:
        model = onnx.load(str(path), load_external_data=False)
        info["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    shape = session.get_inputs()[0].shape
    out_shape = session.get_outputs()[0].shape
    if len(shape) == 4 and all(isinstance(d, int) for d in (*shape[2:], *out_shape)):
        try:
            info["decoder"] = select_decoder((shape[2], shape[3]), out_shape, meta).family
        except ModelError:
            info["decoder"] = None
    return info


def run_info(args: argparse.Namespace) -> int:
    print(json.dumps(model_info(resolve_model_path(args.model)), indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    if args.imgsz < 32 or args.imgsz % 32:
        raise UsageError(f"--imgsz must be a positive multiple of 32, got {args.imgsz}")
    source: str = args.source
    if "/" in source or (Path(source).suffix == ".pt" and Path(source).exists()):
        if not Path(source).is_file():
            raise UsageError(
                f"weights file {source} does not exist; give an existing .pt file or a name like yolo11n"
            )
    elif Path(source).suffix != ".pt":
        source += ".pt"  # ultralytics fetches official weights by file name, e.g. yolo11n.pt
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ModelError(
            "exporting needs ultralytics (and torch), which is not installed: install the export extra with "
            "pip install 'cityeye[export]' and run this command again, or skip exporting and copy a ready "
            "model from ../shared/models/*.onnx"
        ) from None
    args.out.mkdir(parents=True, exist_ok=True)
    exported = Path(YOLO(source).export(format="onnx", imgsz=args.imgsz, dynamic=args.dynamic, simplify=True))
    target = args.out / exported.name
    if exported.resolve() != target.resolve():
        shutil.move(str(exported), target)
    path = resolve_model_path(target)
    print(json.dumps({"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}))
    return 0
