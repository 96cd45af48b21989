"""INT8 copies of a float detector with onnxruntime's quantisation tools.

Dynamic quantisation stores weights as 8-bit and quantises activations per tensor at run time
(no data needed). Static quantisation also fixes activation ranges from calibration frames and
inserts QDQ pairs, which onnxruntime fuses into integer kernels.

Detection heads end in box decoding that mixes pixel coordinates (0..640) and class scores
(0..1) in one tensor: a shared 8-bit scale there would round every score to about 0.01 steps of
640/255, i.e. erase them. So everything from the head's first Reshape on (the decode part, not
the convolutions) is kept in float, which is what keeps the INT8 model's boxes and scores usable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cityeye.models.registry import ModelError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, slots=True)
class QuantizeReport:
    source: str
    out: str
    mode: str
    calibration_frames: int
    excluded_nodes: int
    size_bytes: int


def calibration_images(paths: Sequence[Path], limit: int) -> list[Path]:
    """Image files from files and folders, spread over the whole set when there are more than `limit`."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise ModelError(f"calibration path {p} does not exist; give image files or folders of them")
    if not files:
        raise ModelError(
            "no calibration images (.jpg/.png) found; give --calibration with frames from the site"
        )
    if len(files) > limit:
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in idx]
    return files


def _decode_nodes(model: Any) -> list[str]:
    """Names of nodes from the first Reshape of an activation onwards (the head's box decoding)."""
    live: set[str] = set()
    names: list[str] = []
    inits = {i.name for i in model.graph.initializer}
    started = False
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[0] not in inits and not started:
            started = True
        if started and (node.op_type == "Reshape" or any(i in live for i in node.input)):
            live.update(node.output)
            if node.name:
                names.append(node.name)
    return names


class _Frames:
    """onnxruntime CalibrationDataReader over letterboxed frames (same preprocessing as detection)."""

    def __init__(self, files: list[Path], input_name: str, input_hw: tuple[int, int]) -> None:
        self._it = self._gen(files, input_name, input_hw)

    @staticmethod
    def _gen(
        files: list[Path], name: str, hw: tuple[int, int]
    ) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
        import cv2

        from cityeye.vision.letterbox import letterbox

        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise ModelError(f"calibration image {f} cannot be decoded; remove it or give other frames")
            yield {name: letterbox(np.asarray(img, dtype=np.uint8), hw)[0]}

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._it, None)


def quantize_model(
    source: Path,
    out: Path,
    *,
    mode: str = "dynamic",
    calibration: Sequence[Path] = (),
    frames: int = 32,
    per_channel: bool = True,
) -> QuantizeReport:
    """Write an INT8 copy of `source`; the file appears only when quantisation succeeded."""
    try:
        import onnx
        from onnxruntime import quantization as q
    except ImportError:
        raise ModelError(
            "quantising needs the onnx package: pip install onnx (in cityeye's dev extra)"
        ) from None
    if mode not in ("dynamic", "static"):
        raise ModelError(f"quantisation mode must be dynamic or static, got {mode!r}")
    model = onnx.load(str(source))
    ops = {n.op_type for n in model.graph.node}
    quantised = ops & {"ConvInteger", "QLinearConv", "DynamicQuantizeLinear", "QuantizeLinear"}
    if quantised:
        raise ModelError(
            f"{source} is already quantised ({', '.join(sorted(quantised))}); quantise the float model "
            "instead (e.g. yolov8n_dq.onnx)"
        )
    exclude = _decode_nodes(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if mode == "static" and per_channel and opset < 13:
        # Per-channel QDQ needs DequantizeLinear's `axis`, which exists from opset 13 on.
        from onnx import version_converter

        upgraded = out.with_name(out.name + ".opset13.tmp")
        onnx.save(version_converter.convert_version(model, 13), str(upgraded))
        source_for_q = upgraded
    else:
        source_for_q = source
    n_frames = 0
    try:
        if mode == "dynamic":
            q.quantize_dynamic(
                str(source_for_q),
                str(tmp),
                weight_type=q.QuantType.QUInt8,
                nodes_to_exclude=exclude,
                per_channel=per_channel,
            )
        else:
            if not calibration:
                raise ModelError("static quantisation needs --calibration frames (a folder of site images)")
            dims = model.graph.input[0].type.tensor_type.shape.dim
            if not (dims[2].HasField("dim_value") and dims[3].HasField("dim_value")):
                raise ModelError(f"{source} has a dynamic input size; re-shape it to a fixed size first")
            hw = (dims[2].dim_value, dims[3].dim_value)
            files = calibration_images(calibration, frames)
            n_frames = len(files)
            q.quantize_static(
                str(source_for_q),
                str(tmp),
                _Frames(files, model.graph.input[0].name, hw),
                quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                per_channel=per_channel,
                nodes_to_exclude=exclude,
                calibrate_method=q.CalibrationMethod.MinMax,
            )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        if source_for_q != source:
            source_for_q.unlink(missing_ok=True)
    return QuantizeReport(str(source), str(out), mode, n_frames, len(exclude), out.stat().st_size)
