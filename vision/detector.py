"""The detector facade: one ONNX file in, `Detections` in original-image pixels out.

The model decides everything it can (input size, head family, preprocessing, class names), so a
site switches models by changing one path. `detect` keeps no per-call state on the instance and
onnxruntime sessions allow concurrent `run`, so one Detector can serve several worker threads.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cityeye.models.registry import HOW_TO_GET_A_MODEL, ModelError, open_session, resolve_model_path
from cityeye.vision.decoders import STRIDES, Decoder, class_names, select_decoder
from cityeye.vision.detections import Detections
from cityeye.vision.letterbox import Letterbox, letterbox
from cityeye.vision.nms import nms

if TYPE_CHECKING:
    import onnxruntime as ort

    from cityeye.config import ModelConfig

log = logging.getLogger(__name__)

_DEFAULT_IMGSZ = 640
_INPUT_DTYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def _metadata_imgsz(meta: dict[str, str]) -> tuple[int, int] | None:
    try:
        v = ast.literal_eval(meta["imgsz"])
    except (KeyError, ValueError, SyntaxError):
        return None
    if isinstance(v, int):
        return v, v
    if isinstance(v, list | tuple) and len(v) == 2:
        return int(v[0]), int(v[1])
    return None


class Detector:
    """An ONNX object detector (Ultralytics YOLOv8/11, YOLOX, end-to-end exports) on onnxruntime CPU."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        imgsz: int | None = None,
        confidence: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int = 0,
    ) -> None:
        if not 0.0 <= confidence < 1.0:
            raise ValueError(f"confidence must be in [0, 1), got {confidence}")
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {iou}")
        if max_det < 1:
            raise ValueError(f"max_det must be at least 1, got {max_det}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = onnxruntime default), got {threads}")
        self.confidence = confidence
        self.iou = iou
        self.max_det = max_det
        self._path = resolve_model_path(path)
        self._session = open_session(self._path, threads)
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        self._input_name, self._input_hw, self._input_dtype = self._inspect_input(imgsz, meta)
        self._output_name = self._session.get_outputs()[0].name  # extra outputs (e.g. protos) are not run
        self._decoder = select_decoder(self._input_hw, self._output_shape(), meta)
        self._names = class_names(meta, self._decoder.num_classes)
        log.debug("loaded %s: %s head, input %s, %d classes", self._path, self._decoder.family,
                  self._input_hw, len(self._names))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Detector:
        return cls(cfg.path, imgsz=cfg.imgsz, confidence=cfg.confidence, iou=cfg.iou, threads=cfg.threads)

    def _inspect_input(
        self, imgsz: int | None, meta: dict[str, str]
    ) -> tuple[str, tuple[int, int], type[np.floating[Any]]]:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [(i.name, i.shape) for i in inputs]
            raise ModelError(
                f"{self._path}: expected one image input (1, 3, H, W), got {shapes}. {HOW_TO_GET_A_MODEL}"
            )
        inp = inputs[0]
        dtype = _INPUT_DTYPES.get(inp.type)
        if dtype is None:
            raise ModelError(
                f"{self._path}: input {inp.name!r} is {inp.type}; cityeye feeds float or float16 images"
            )
        _, c, h, w = inp.shape
        if isinstance(c, int) and c != 3:
            raise ModelError(
                f"{self._path}: input {inp.name!r} has {c} channels; cityeye feeds 3-channel images"
            )
        if isinstance(h, int) and isinstance(w, int):
            if imgsz is not None and (imgsz, imgsz) != (h, w):
                raise ModelError(
                    f"{self._path} has a fixed {w}x{h} input, so imgsz={imgsz} cannot be used; leave "
                    f"imgsz unset, or export the model with `cityeye models export ... --imgsz {imgsz}` "
                    "or --dynamic"
                )
            return inp.name, (h, w), dtype
        if imgsz is not None:
            hw = (imgsz, imgsz)
        else:
            hw = _metadata_imgsz(meta) or (_DEFAULT_IMGSZ, _DEFAULT_IMGSZ)
        if hw[0] % max(STRIDES) or hw[1] % max(STRIDES):
            raise ValueError(
                f"imgsz {hw[1]}x{hw[0]} must be a multiple of {max(STRIDES)} for this dynamic model"
            )
        return inp.name, hw, dtype

    def _output_shape(self) -> list[int]:
        """The first output's shape; dynamic models are run once on a blank image to learn it."""
        shape = self._session.get_outputs()[0].shape
        if all(isinstance(d, int) for d in shape):
            return [int(d) for d in shape]
        h, w = self._input_hw
        try:
            return list(self.infer(np.zeros((1, 3, h, w), dtype=np.float32)).shape)
        except Exception as exc:  # onnxruntime's pybind errors share no base class
            raise ModelError(
                f"{self._path} does not run at input {w}x{h} ({exc}); give imgsz the size the model was "
                "exported with"
            ) from exc

    @property
    def names(self) -> dict[int, str]:
        return self._names

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the tensor the model takes."""
        return self._input_hw

    @property
    def path(self) -> Path:
        return self._path

    @property
    def decoder(self) -> Decoder:
        return self._decoder

    @property
    def session(self) -> ort.InferenceSession:
        """The onnxruntime session, for benchmarks that time `run` alone."""
        return self._session

    # The three stages are public so benchmarks can time them and batch callers can compose them.
    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], Letterbox]:
        return letterbox(image_bgr, self._input_hw, self._decoder.preprocess)

    def infer(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        feed = tensor if self._input_dtype is np.float32 else tensor.astype(self._input_dtype)
        out = self._session.run([self._output_name], {self._input_name: feed})[0]
        return np.asarray(out, dtype=np.float32)

    def postprocess(self, output: npt.NDArray[np.float32], geo: Letterbox) -> Detections:
        cand = self._decoder.decode(output, self.confidence)
        if self._decoder.needs_nms:
            keep = nms(cand.xyxy, cand.score, self.iou, cand.class_id, max_det=self.max_det)
        else:
            keep = np.argsort(-cand.score, kind="stable")[: self.max_det]
        xyxy = geo.boxes_to_image(cand.xyxy[keep])
        return Detections(xyxy, cand.score[keep], cand.class_id[keep], self._names)

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Detections of one BGR uint8 image (H, W, 3), boxes in its own pixels."""
        tensor, geo = self.preprocess(image_bgr)
        return self.postprocess(self.infer(tensor), geo)

    def __repr__(self) -> str:
        h, w = self._input_hw
        family = self._decoder.family
        return f"Detector({str(self._path)!r}, {family}, {w}x{h}, conf={self.confidence}, iou={self.iou})"
