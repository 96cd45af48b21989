"""`cityeye models info|export|reshape|quantize|cache`: inspect, make and adapt ONNX detectors.

`export` is the only place cityeye touches ultralytics (and torch): it is imported lazily so the
edge install stays small, and its absence is reported with the command that installs it.
`reshape` and `quantize` need only onnx/onnxruntime; their outputs go to the model cache
directory unless --out is given, named after source and settings so that `model.path` can name
them and every edge box re-creates the same file.
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
    cache_dir,
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
    p = sub.add_parser(
        "models",
        help="inspect or export ONNX detector models",
        description="Inspect ONNX models or export Ultralytics weights to ONNX.",
    )
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

    rs = msub.add_parser(
        "reshape",
        aliases=["dynamic"],
        help="copy a static model with a dynamic batch axis and/or another input size (graph edit, checked)",
        description="Edit a static ONNX graph so that several frames share one run (dynamic batch) and/or it "
        "takes another input size such as 384x640 for 16:9 frames. The copy is run against the original "
        "before it is written; the JSON report gives the largest output difference.",
    )
    rs.add_argument("model", metavar="M.onnx", help="static ONNX model")
    rs.add_argument("--imgsz", help="new input size HxW (e.g. 384x640), N, or 'dynamic' (default: keep)")
    rs.add_argument(
        "--batch", choices=("dynamic", "1"), default="dynamic", help="batch axis (default dynamic)"
    )
    rs.add_argument("--out", type=Path, help="output file (default: in the model cache, see `models cache`)")
    rs.set_defaults(func=run_reshape)

    qz = msub.add_parser(
        "quantize",
        help="INT8 copy of a float model (onnxruntime dynamic or static quantisation)",
        description="Quantise weights (and with --mode static, activations calibrated on site frames) to "
        "INT8. The box-decoding tail of the head stays float so scores keep their precision.",
    )
    qz.add_argument("model", metavar="M.onnx", help="float ONNX model")
    qz.add_argument("--mode", choices=("dynamic", "static"), default="dynamic")
    qz.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR|IMAGE",
        help="frames for static calibration (folders or files; use frames of your own cameras)",
    )
    qz.add_argument("--frames", type=int, default=32, help="calibration frames used at most (default 32)")
    qz.add_argument("--per-tensor", action="store_true", help="one scale per tensor instead of per channel")
    qz.add_argument("--out", type=Path, help="output file (default: in the model cache)")
    qz.set_defaults(func=run_quantize)

    ca = msub.add_parser("cache", help="list the model cache directory ($CITYEYE_MODEL_CACHE) as JSON")
    ca.set_defaults(func=run_cache)


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
    if (
        len(shape) == 4
        and len(out_shape) == 3
        and all(isinstance(d, int) for d in (*shape[2:], *out_shape[1:]))
    ):
        try:  # the batch axis may be dynamic ("batch"); the head is judged per image
            info["decoder"] = select_decoder((shape[2], shape[3]), [1, *out_shape[1:]], meta).family
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


def _cached_name(source: Path, suffix: str) -> Path:
    return cache_dir() / f"{source.stem}_{suffix}.onnx"


def run_reshape(args: argparse.Namespace) -> int:
    from cityeye.models.graph import reshape_model
    from cityeye.vision.config import parse_hw

    source = resolve_model_path(args.model)
    imgsz: tuple[int, int] | str | None = None
    if args.imgsz:
        if args.imgsz.lower() == "dynamic":
            imgsz = "dynamic"
        else:
            try:
                imgsz = parse_hw(args.imgsz)
            except ValueError as exc:
                raise UsageError(f"--imgsz: {exc}") from None
            if imgsz[0] % 32 or imgsz[1] % 32 or min(imgsz) < 32:
                raise UsageError(f"--imgsz {args.imgsz}: height and width must be positive multiples of 32")
    dynamic = args.batch == "dynamic"
    if imgsz is None and not dynamic:
        raise UsageError("nothing to change: give --imgsz HxW|dynamic and/or --batch dynamic")
    size = "" if imgsz is None else ("_hw-dyn" if imgsz == "dynamic" else f"_{imgsz[0]}x{imgsz[1]}")
    out = args.out or _cached_name(source, ("b-dyn" if dynamic else "b1") + size)
    report = reshape_model(source, out, imgsz=imgsz, dynamic_batch=dynamic)
    print(
        json.dumps(
            {**{f: getattr(report, f) for f in report.__slots__}, "sha256": sha256_file(out)}, indent=2
        )
    )
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    from cityeye.models.quantize import quantize_model

    source = resolve_model_path(args.model)
    if args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    if args.mode == "static" and not args.calibration:
        raise UsageError("--mode static needs --calibration DIR|IMAGE... (frames from your cameras)")
    suffix = f"int8-{args.mode}" + ("-pt" if args.per_tensor else "")
    out = args.out or _cached_name(source, suffix)
    report = quantize_model(
        source,
        out,
        mode=args.mode,
        calibration=args.calibration,
        frames=args.frames,
        per_channel=not args.per_tensor,
    )
    print(
        json.dumps(
            {**{f: getattr(report, f) for f in report.__slots__}, "sha256": sha256_file(out)}, indent=2
        )
    )
    return 0


def run_cache(args: argparse.Namespace) -> int:
    d = cache_dir()
    models = sorted(d.glob("*.onnx")) if d.is_dir() else []
    print(
        json.dumps(
            {
                "cache_dir": str(d),
                "models": [{"name": p.stem, "path": str(p), "size": p.stat().st_size} for p in models],
            },
            indent=2,
        )
    )
    return 0
