"""The image quantisation a run-time-quantised model starts with, done on the pixel bytes instead.

onnxruntime's dynamic quantisation (`quantize_dynamic`, e.g. the shared yolov8n_int8.onnx) starts
the graph with `DynamicQuantizeLinear(images)`: one pass for the tensor's min and max, one to turn
every float back into a byte. The floats are the preprocessing's own bytes through a fixed table
(x / 255, or x for YOLOX), so everything that node computes follows from the largest byte M of
the tensor: min is 0 (the node includes 0 in the range), max is table[M], scale = max / 255,
zero point 0, and each byte x becomes round_half_even(table[x] / scale). With M = 255, as in
almost every daylight frame, that is x itself. The model-cache copy (models/rawinput.py) takes
(bytes, scale, zero point) as inputs and the detector computes them here: no float tensor, no
quantisation pass, outputs bit-identical (checked when the copy is derived, for every M and byte,
against onnxruntime's own kernel on the machine that runs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

QUANT_INPUT_KEY = "cityeye_input_quant"
"""Metadata of a copy that takes the quantised image as inputs (bytes, scale, zero point)."""


@dataclass(frozen=True, slots=True)
class QuantisedImage:
    """What `DynamicQuantizeLinear` would output for one tensor."""

    scale: np.float32
    zero_point: np.uint8
    lut: npt.NDArray[np.uint8] | None
    """Each byte's quantised byte; None where that is the byte itself (M = 255 with x / 255)."""


@dataclass(frozen=True, slots=True, eq=False)
class DynamicInputQuantiser:
    """onnxruntime's DynamicQuantizeLinear (uint8) of `values[x]`, computed from the bytes x."""

    values: npt.NDArray[np.float32]
    """The float each byte stands for in the original graph's input, non-negative and increasing."""
    _by_peak: dict[int, QuantisedImage] = field(default_factory=dict, repr=False)

    def for_peak(self, peak: int) -> QuantisedImage:
        """The node's outputs for a tensor whose largest byte is `peak` (256 cases, each made once)."""
        got = self._by_peak.get(peak)
        if got is None:
            top = self.values[peak]
            # onnxruntime: range widened to include 0, scale = (max - min) / 255 (1 when max == min),
            # zero point = round(clamp(0 - min / scale)) = 0, q = clamp(round_half_even(x / scale) + zp).
            scale = np.float32(1.0) if top == 0 else np.float32(top / np.float32(255.0))
            q = np.clip(np.rint(self.values / scale), 0, 255).astype(np.uint8)
            lut = None if np.array_equal(q, np.arange(256)) else q
            got = self._by_peak[peak] = QuantisedImage(scale, np.uint8(0), lut)
        return got

    def quantise(
        self, tensor: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8] | None = None
    ) -> tuple[npt.NDArray[np.uint8], QuantisedImage]:
        """The quantised bytes of a uint8 (B, 3, H, W) tensor and the node's scale and zero point.

        Returns `tensor` itself when the bytes are already what the node computes; otherwise writes
        them to `out` (which may be `tensor`, to work in place) or a new array.
        """
        flat = tensor.reshape(-1, tensor.shape[-1])  # 2-D view for OpenCV (contiguous tensors only)
        peak = int(cv2.minMaxLoc(flat)[1])
        q = self.for_peak(peak)
        if q.lut is None:
            return tensor, q
        dst = np.empty_like(tensor) if out is None else out
        cv2.LUT(flat, q.lut, dst=dst.reshape(-1, tensor.shape[-1]))
        return dst, q
