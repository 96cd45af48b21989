"""The detector facade: one ONNX file in, `Detections` in original-image pixels out.

The model decides everything it can (input size, head family, preprocessing, class names), so a
site switches models by changing one path; the configuration overrides what a model cannot say
about itself (the head family of a bare export, class names). `detect` keeps no per-call state on
the instance (its scratch input tensor is per thread) and onnxruntime sessions allow concurrent
`run`, so one Detector can serve several worker threads.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cityeye.models.registry import (
    HOW_TO_GET_A_MODEL,
    ModelError,
    SessionSettings,
    open_session,
    resolve_model_path,
)
from cityeye.vision.config import TileConfig, parse_hw
from cityeye.vision.decoders import (
    FLOAT_HEAD_KEY,
    SCORE_QUANT_KEY,
    STRIDES,
    Candidates,
    Decoder,
    RawOutput,
    class_names,
    logit_head_decoder,
    quantised_score_decoder,
    select_decoder,
    take,
)
from cityeye.vision.detections import Detections
from cityeye.vision.inputquant import QUANT_INPUT_KEY, DynamicInputQuantiser
from cityeye.vision.letterbox import Letterbox, letterbox, pixel_values
from cityeye.vision.nms import nms
from cityeye.vision.scratch import per_thread

if TYPE_CHECKING:
    import onnxruntime as ort

    from cityeye.vision.config import ModelConfig

log = logging.getLogger(__name__)

_DEFAULT_IMGSZ = 640
_INPUT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,  # raw pixel bytes, normalised inside the graph (models/rawinput.py)
}
_OUTPUT_DTYPES: dict[str, type[np.generic]] = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
_BINDABLE = (np.float32, np.uint8)
"""Output types written straight into our buffers (others, e.g. float16, go through `run`)."""
_EDGE_PX = 1.0
"""A tile box this close to an interior tile border is taken as cut by it."""


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


def quantises_at_run_time(path: Path) -> bool:
    """Whether the graph has DynamicQuantizeLinear, whose per-tensor scale spans the whole batch.

    Operator types are plain strings in the ONNX protobuf, so a byte search answers this without
    the onnx package (which the edge install does not carry).
    """
    with path.open("rb") as f:
        return b"DynamicQuantizeLinear" in f.read()


def tile_windows(
    image_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: float
) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) windows covering the image, neighbours sharing at least `overlap` of a tile.

    Windows are spread evenly (the last one ends at the image border rather than running past it),
    so every pixel is seen at the tile's full resolution and no window is mostly padding.
    """

    def starts(length: int, tile: int) -> list[int]:
        if length <= tile:
            return [0]
        step = tile * (1.0 - overlap)
        n = math.ceil((length - tile) / step) + 1
        return [round(i * (length - tile) / (n - 1)) for i in range(n)]

    h, w = image_hw
    th, tw = min(tile_hw[0], h), min(tile_hw[1], w)
    return [(y, x, y + th, x + tw) for y in starts(h, th) for x in starts(w, tw)]


class Detector:
    """An ONNX object detector (Ultralytics YOLOv8/11, YOLOv5, YOLOX, end-to-end exports) on onnxruntime."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        imgsz: int | tuple[int, int] | None = None,
        confidence: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int = 0,
        decoder: str = "auto",
        names: Sequence[str] | Mapping[int, str] | None = None,
        classes: Sequence[str] | None = None,
        agnostic_nms: bool = False,
        batch: int = 1,
        tile: TileConfig | None = None,
        session: SessionSettings | None = None,
        auto_reshape: bool = True,
        raw_pixels: bool = True,
        byte_scores: bool = True,
        logit_head: bool = True,
    ) -> None:
        if not 0.0 <= confidence < 1.0:
            raise ValueError(f"confidence must be in [0, 1), got {confidence}")
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {iou}")
        if max_det < 1:
            raise ValueError(f"max_det must be at least 1, got {max_det}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = onnxruntime default), got {threads}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.confidence = confidence
        self.iou = iou
        self.max_det = max_det
        self.agnostic_nms = agnostic_nms
        self.tile = tile
        self._local = threading.local()
        self._path = self._source = resolve_model_path(path)
        self._copies: list[str] = []
        self._settings = settings = session or SessionSettings(intra_threads=threads)
        self._session = open_session(self._path, settings)
        hw = None if imgsz is None else parse_hw(imgsz)
        if batch > 1 and quantises_at_run_time(self._path):  # refused before any copy is derived
            raise ModelError(
                f"{self._path} quantises activations at run time (DynamicQuantizeLinear) with one scale per "
                "tensor, so frames sharing a run would change each other's detections; use batch: 1, a "
                "float model, or a static INT8 copy (`cityeye models quantize --mode static`)"
            )
        if auto_reshape:
            self._path = self._derive(hw, batch) or self._path
        normalize = self._family_normalises(decoder) if raw_pixels else None
        steps = (
            (logit_head and decoder == "auto", "logithead"),
            (raw_pixels, "rawinput"),
            (byte_scores and decoder == "auto", "scorehead"),
        )
        for wanted, derive in steps:
            copy = self._derive_copy(derive, normalize) if wanted else None
            if copy is not None:
                self._path = copy
                self._copies.append(derive)
        if self._path != self._source:  # one session for the copy that runs, not one per step
            self._session = open_session(self._path, settings)
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        quant = json.loads(meta[QUANT_INPUT_KEY]) if QUANT_INPUT_KEY in meta else None
        self._input_name, self._input_hw, self._input_dtype, fixed_batch = self._inspect_input(hw, meta)
        outputs = self._session.get_outputs()
        byte_head, logit_copy = SCORE_QUANT_KEY in meta, FLOAT_HEAD_KEY in meta
        # Extra outputs of other heads (e.g. segmentation protos) are not run.
        self._output_names = [o.name for o in outputs[: 2 if byte_head or logit_copy else 1]]
        self._out_specs = self._output_specs()
        self._out_shape = self._out_specs[0][0]
        self._bindable = all(d in _BINDABLE for _, d in self._out_specs)
        if byte_head:
            self._decoder: Decoder = quantised_score_decoder(self._input_hw, meta, self._out_specs[1][0][1])
        elif logit_copy:
            self._decoder = logit_head_decoder(self._input_hw, meta, self._out_specs[1][0][1])
        else:
            self._decoder = select_decoder(self._input_hw, self._out_shape, meta, decoder)
        self._names = class_names(meta, self._decoder.num_classes, names)
        # A run-time-quantised copy's quantiser and the names of its scale and zero point inputs.
        self._quant: tuple[DynamicInputQuantiser, str, str] | None = None
        if quant:
            quantiser = DynamicInputQuantiser(pixel_values(self._decoder.preprocess.normalize))
            self._quant = (quantiser, quant["scale"], quant["zero_point"])
        self._fixed_batch = fixed_batch
        if fixed_batch is not None and batch > 1 and fixed_batch != batch:
            raise ModelError(
                f"{self._path} takes exactly {fixed_batch} image(s) per run, so batch={batch} cannot be "
                "used; "
                f"set batch: 1, or make the batch axis dynamic with `cityeye models reshape {self._path} "
                "--batch dynamic`"
            )
        self.batch = fixed_batch or batch
        self._class_filter = self._class_ids(classes)
        log.debug(
            "loaded %s: %s head, input %s, batch %s, %d classes",
            self._path,
            self._decoder.family,
            self._input_hw,
            fixed_batch or "dynamic",
            len(self._names),
        )

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Detector:
        return cls(
            cfg.path,
            imgsz=cfg.input_hw,
            confidence=cfg.confidence,
            iou=cfg.iou,
            max_det=cfg.max_det,
            decoder=cfg.decoder,
            names=cfg.names,
            classes=cfg.classes,
            agnostic_nms=cfg.agnostic_nms,
            batch=cfg.batch,
            tile=cfg.tile,
            auto_reshape=cfg.auto_reshape,
            raw_pixels=cfg.raw_pixels,
            byte_scores=cfg.byte_scores,
            logit_head=cfg.logit_head,
            session=SessionSettings(
                intra_threads=cfg.threads,
                inter_threads=cfg.inter_threads,
                graph_optimization=cfg.graph_optimization,
                parallel=cfg.parallel_execution,
                stop_spinning=cfg.stop_spinning,
                providers=tuple(cfg.providers),
            ),
        )

    def _derive(self, hw: tuple[int, int] | None, batch: int) -> Path | None:
        """A cached graph-edited copy when a fixed-shape model cannot take the configured size or batch.

        Only Ultralytics-style and raw-grid heads are edited (models/graph.py checks the copy against
        the original); a model that quantises at run time is never batched, see below.
        """
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            return None  # _inspect_input explains what is wrong with it
        b, _, h, w = inputs[0].shape
        if not (isinstance(h, int) and isinstance(w, int)):
            return None
        new_hw = hw if hw is not None and hw != (h, w) else None
        new_batch = batch > 1 and isinstance(b, int) and not quantises_at_run_time(self._path)
        if new_hw is None and not new_batch:
            return None
        from cityeye.models.graph import derive_model

        return derive_model(self._path, new_hw, dynamic_batch=new_batch or not isinstance(b, int))

    def _family_normalises(self, family: str) -> bool | None:
        """Whether the file's head family takes x / 255 (Ultralytics) or 0..255 (YOLOX); None if unknown.

        Decided on the file before any copy is made, because folding the scale into a float copy
        depends on it (models/rawinput.py); unknown means no float copy.
        """
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        try:
            _, hw, _, _ = self._inspect_input(None, meta)
            shape = [1, *self._session.get_outputs()[0].shape[1:]]
            return select_decoder(hw, shape, meta, family).preprocess.normalize
        except (ModelError, ValueError):
            return None

    def _derive_copy(self, kind: str, normalize: bool | None) -> Path | None:
        """A cached, checked copy of the model that skips work around the frame.

        "rawinput": takes the pixel bytes instead of a float image (models/rawinput.py: bit-identical
        for quantised graphs, within float rounding for a float graph's folded first convolution).
        "scorehead": outputs a statically quantised head's class scores (and box bins, where the box
        decode is float) as bytes instead of their float sigmoid and decoded boxes (same candidates
        and classes; scores within 1e-6; boxes within 1e-3 px; models/scorehead.py).
        "logithead": a float head's class logits and box bins, decoded per candidate instead of per
        anchor (same candidates and classes, boxes within 1e-3 px; models/floathead.py).
        A model this does not apply to, or a failed check, keeps the file as it is.
        """
        from cityeye.models import floathead, rawinput, scorehead

        try:
            if kind == "logithead":
                if not scorehead.takes_quantised_scores(self._path) and floathead.takes_logit_head(
                    self._path
                ):
                    return floathead.derive_logit_head_model(self._path)
            elif kind == "rawinput":
                got = rawinput.raw_pixel_kind(self._path)
                if got is not None and (got != "float" or normalize is not None):
                    return rawinput.derive_raw_pixel_model(self._path, normalize is not False)
            elif scorehead.takes_quantised_scores(self._path):
                return scorehead.derive_quantised_score_model(self._path)
        except (ModelError, OSError) as exc:
            log.warning("running %s as it is (%s copy refused): %s", self._path, kind, exc)
        return None

    def _class_ids(self, classes: Sequence[str] | None) -> npt.NDArray[np.int32] | None:
        if classes is None:
            return None
        by_name = {v: k for k, v in self._names.items()}
        unknown = [c for c in classes if c not in by_name]
        if unknown:
            raise ModelError(
                f"classes {unknown} are not among the model's class names "
                f"({', '.join(list(self._names.values())[:12])}, ...); check spelling or model.names"
            )
        return np.array(sorted(by_name[c] for c in classes), dtype=np.int32)

    def _inspect_input(
        self, imgsz: tuple[int, int] | None, meta: dict[str, str]
    ) -> tuple[str, tuple[int, int], type[np.generic], int | None]:
        quant = json.loads(meta[QUANT_INPUT_KEY]) if QUANT_INPUT_KEY in meta else {}
        inputs = [i for i in self._session.get_inputs() if i.name not in quant.values()]
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [(i.name, i.shape) for i in inputs]
            raise ModelError(
                f"{self._path}: expected one image input of rank 4 (batch, 3, H, W), got {shapes}; this is "
                f"not an image detector cityeye can feed. {HOW_TO_GET_A_MODEL}"
            )
        inp = inputs[0]
        dtype = _INPUT_DTYPES.get(inp.type)
        if dtype is None:
            raise ModelError(
                f"{self._path}: input {inp.name!r} is {inp.type}; cityeye feeds float, float16 or uint8 "
                "images"
            )
        b, c, h, w = inp.shape
        if isinstance(c, int) and c != 3:
            raise ModelError(
                f"{self._path}: input {inp.name!r} has {c} channels; cityeye feeds 3-channel images"
            )
        fixed_batch = b if isinstance(b, int) and b > 0 else None
        if isinstance(h, int) and isinstance(w, int):
            if imgsz is not None and imgsz != (h, w):
                raise ModelError(
                    f"{self._path} has a fixed {w}x{h} input, so imgsz={imgsz[1]}x{imgsz[0]} (WxH) cannot be "
                    f"used; leave imgsz unset, or make a copy at that size with `cityeye models reshape "
                    f"{self._path} --imgsz {imgsz[0]}x{imgsz[1]}` (height x width)"
                )
            return inp.name, (h, w), dtype, fixed_batch
        default = _metadata_imgsz(meta) or (_DEFAULT_IMGSZ, _DEFAULT_IMGSZ)
        hw = imgsz if imgsz is not None else default
        if hw[0] % max(STRIDES) or hw[1] % max(STRIDES):
            raise ValueError(
                f"imgsz {hw[1]}x{hw[0]} must be a multiple of {max(STRIDES)} for this dynamic model"
            )
        return inp.name, hw, dtype, fixed_batch

    def _output_specs(self) -> list[tuple[list[int], type[np.generic]]]:
        """Each run output's shape for one image and its dtype; dynamic ones from one blank run."""
        outs = {o.name: o for o in self._session.get_outputs()}
        specs: list[tuple[list[int], type[np.generic]]] = []
        for name in self._output_names:
            o = outs[name]
            dtype = _OUTPUT_DTYPES.get(o.type, np.float32)
            if o.shape and len(o.shape) >= 2 and all(isinstance(d, int) for d in o.shape[1:]):
                specs.append(([1, *(int(d) for d in o.shape[1:])], dtype))
            else:
                specs = []
                break
        if specs:
            return specs
        h, w = self._input_hw
        b = self._session.get_inputs()[0].shape[0]
        n = b if isinstance(b, int) and b > 0 else 1
        try:
            feed = np.zeros((n, 3, h, w), dtype=self._input_dtype)
            got = self._session.run(self._output_names, {self._input_name: feed})
        except Exception as exc:  # onnxruntime's pybind errors share no base class
            raise ModelError(
                f"{self._path} does not run at input {w}x{h} ({exc}); give imgsz the size the model was "
                "exported with"
            ) from exc
        return [([1, *np.asarray(g).shape[1:]], np.asarray(g).dtype.type) for g in got]

    @property
    def names(self) -> dict[int, str]:
        return self._names

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the tensor the model takes."""
        return self._input_hw

    @property
    def dynamic_batch(self) -> bool:
        """Whether several frames can share one session run."""
        return self._fixed_batch is None

    @property
    def path(self) -> Path:
        """The file the session runs: the configured one, or its derived copy in the model cache."""
        return self._path

    @property
    def source(self) -> Path:
        """The configured model file, before any derived copy."""
        return self._source

    @property
    def settings(self) -> SessionSettings:
        return self._settings

    @property
    def copies(self) -> tuple[str, ...]:
        """Which checked copies the session runs, in the order derived ("logithead", "rawinput",
        "scorehead"); () for the file itself."""
        return tuple(self._copies)

    @property
    def decoder(self) -> Decoder:
        return self._decoder

    @property
    def session(self) -> ort.InferenceSession:
        """The onnxruntime session, for benchmarks that time `run` alone."""
        return self._session

    @property
    def _tensor_dtype(self) -> type[np.generic]:
        """What preprocessing writes: bytes for raw-pixel models, else float32 (float16 is cast at run)."""
        return np.uint8 if self._input_dtype is np.uint8 else np.float32

    # The stages are public so benchmarks can time them and batch callers can compose them.
    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], Letterbox]:
        out = np.empty((1, 3, *self._input_hw), dtype=self._tensor_dtype)
        return letterbox(image_bgr, self._input_hw, self._decoder.preprocess, out)

    def _scratch(self, n: int) -> npt.NDArray[Any]:
        """This thread's reusable input tensor for `n` frames.

        A fresh multi-megabyte array costs page faults on every frame (~0.3 ms at 384x640, a few
        per cent of a fast model's run); one buffer per thread and batch size avoids that and
        keeps `detect` safe to call from several threads. At most two sizes are kept per thread.
        """
        return per_thread(
            self._local, "bufs", n, lambda: np.empty((n, 3, *self._input_hw), dtype=self._tensor_dtype)
        )

    def preprocess_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], *, reuse: bool = False
    ) -> tuple[npt.NDArray[Any], list[Letterbox]]:
        """One (B, 3, H, W) tensor, each image letterboxed straight into its slot.

        With `reuse` the tensor is this thread's scratch buffer, overwritten by its next call.
        """
        n = max(len(images), self._fixed_batch or 0)
        tensor = self._scratch(n) if reuse else np.empty((n, 3, *self._input_hw), dtype=self._tensor_dtype)
        geos = [
            letterbox(img, self._input_hw, self._decoder.preprocess, tensor[i : i + 1])[1]
            for i, img in enumerate(images)
        ]
        if n > len(images):
            tensor[len(images) :] = 0  # a fixed-batch model's unused slots
        return tensor, geos

    def feed(self, tensor: npt.NDArray[Any]) -> dict[str, Any]:
        """The session inputs for a tensor made by `preprocess`/`preprocess_batch` (left unchanged).

        One image input for most models; a run-time-quantised copy also takes the image's scale and
        zero point, computed here from its bytes (vision/inputquant.py).
        """
        if self._quant is None:
            return {
                self._input_name: tensor
                if tensor.dtype == self._input_dtype
                else tensor.astype(self._input_dtype)
            }
        quantiser, scale_name, zero_name = self._quant
        q, params = quantiser.quantise(np.ascontiguousarray(tensor))
        return {
            self._input_name: q,
            scale_name: np.array(params.scale),
            zero_name: np.array(params.zero_point),
        }

    def infer(self, tensor: npt.NDArray[Any]) -> RawOutput:
        """Raw model output of a (B, 3, H, W) tensor made by `preprocess`/`preprocess_batch`.

        One float32 array for most heads; (boxes or byte bins, byte scores) for a byte-score copy.
        """
        if tensor.ndim != 4:
            raise ValueError(f"infer takes a (batch, 3, H, W) tensor, got shape {tensor.shape}")
        if (tensor.dtype == np.uint8) != (self._input_dtype is np.uint8):
            raise ValueError(
                f"{self._path.name} takes {np.dtype(self._input_dtype).name} tensors, got {tensor.dtype}; "
                "make the tensor with this detector's preprocess() or preprocess_batch()"
            )
        outs = self._session.run(self._output_names, self.feed(tensor))
        if len(outs) > 1:
            return tuple(np.asarray(o) for o in outs)
        return np.asarray(outs[0], dtype=np.float32)

    def _infer_scratch(self, tensor: npt.NDArray[Any]) -> RawOutput:
        """`infer` on this thread's scratch tensor, into an output buffer reused by its next call.

        onnxruntime's `run` allocates and fills a fresh output array every frame (2.8 MB at 640);
        an IO binding made once per thread and batch size writes into the same memory instead,
        about 0.1 ms per frame. Callers must be done with the output before the next call.
        """
        if tensor.dtype != self._input_dtype or not self._bindable:
            return self.infer(tensor)
        bound: dict[int, tuple[npt.NDArray[Any], Any, RawOutput, tuple[npt.NDArray[Any], ...]]]
        bound = self._local.__dict__.setdefault("bound", {})
        n = tensor.shape[0]
        entry = bound.get(n)
        if entry is None or entry[0] is not tensor:
            binding = self._session.io_binding()
            binding.bind_cpu_input(self._input_name, tensor)  # references the buffer, no copy
            # A run-time-quantised copy's scale and zero point: bound once, rewritten per frame.
            params: tuple[npt.NDArray[Any], ...] = ()
            if self._quant is not None:
                params = (np.ones((), np.float32), np.zeros((), np.uint8))
                for name, arr in zip(self._quant[1:], params, strict=True):
                    binding.bind_cpu_input(name, arr)
            outs = []
            for name, (shape, dtype) in zip(self._output_names, self._out_specs, strict=True):
                out = np.empty((n, *shape[1:]), dtype=dtype)
                binding.bind_output(name, "cpu", 0, dtype, list(out.shape), out.ctypes.data)
                outs.append(out)
            if len(bound) >= 2:
                bound.clear()
            entry = bound[n] = (tensor, binding, tuple(outs) if len(outs) > 1 else outs[0], params)
        if self._quant is not None:
            _, q = self._quant[0].quantise(tensor, out=tensor)  # scratch: quantised in place
            entry[3][0][()] = q.scale
            entry[3][1][()] = q.zero_point
        self._session.run_with_iobinding(entry[1])
        return entry[2]

    def _decode_keep(self, output: RawOutput) -> tuple[Candidates, npt.NDArray[np.intp]]:
        """Decoded, class-filtered candidates of one image (input-tensor pixels) and those NMS keeps."""
        cand = self._decoder.decode(output, self.confidence)
        if self._class_filter is not None and len(cand):
            keep_cls = np.isin(cand.class_id, self._class_filter)
            cand = Candidates(cand.xyxy[keep_cls], cand.score[keep_cls], cand.class_id[keep_cls])
        if self._decoder.needs_nms:
            cls = None if self.agnostic_nms else cand.class_id
            return cand, nms(cand.xyxy, cand.score, self.iou, cls, max_det=self.max_det)
        return cand, np.argsort(-cand.score, kind="stable")[: self.max_det]

    def _candidates(self, output: RawOutput) -> Candidates:
        """Decoded, class-filtered and NMS-ed boxes of one image, in input-tensor pixels."""
        cand, keep = self._decode_keep(output)
        return Candidates(cand.xyxy[keep], cand.score[keep], cand.class_id[keep])

    def postprocess(self, output: RawOutput, geo: Letterbox) -> Detections:
        """Detections of one image from its (1, ...) slice of the model output."""
        cand, keep = self._decode_keep(output)
        xyxy = geo.boxes_to_image(cand.xyxy[keep])
        return Detections(xyxy, cand.score[keep], cand.class_id[keep], self._names)

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Detections of one BGR uint8 image (H, W, 3), boxes in its own pixels."""
        if self.tile is not None:
            return self._detect_tiled(image_bgr)
        if self._fixed_batch not in (None, 1):
            return self.detect_batch([image_bgr])[0]
        tensor, geo = letterbox(image_bgr, self._input_hw, self._decoder.preprocess, self._scratch(1))
        return self.postprocess(self._infer_scratch(tensor), geo)

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        """Detections of several BGR frames (e.g. one per camera), `batch` frames per session run.

        With a static batch-1 model this is a loop over `detect`; results are the same either way
        for float models (INT8 models that quantise activations per tensor at run time compute one
        scale over the whole batch, so their scores can differ slightly from single-frame runs).
        """
        if self.tile is not None:
            return [self._detect_tiled(img) for img in images]
        out: list[Detections] = []
        step = self.batch
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            tensor, geos = self.preprocess_batch(chunk, reuse=True)
            raw = self._infer_scratch(tensor)
            out += [self.postprocess(take(raw, i), g) for i, g in enumerate(geos)]
        return out

    def _run_crops(self, crops: list[npt.NDArray[np.uint8]]) -> list[tuple[Candidates, Letterbox]]:
        results: list[tuple[Candidates, Letterbox]] = []
        for start in range(0, len(crops), self.batch):
            tensor, geos = self.preprocess_batch(crops[start : start + self.batch], reuse=True)
            raw = self.infer(tensor)
            results += [(self._candidates(take(raw, i)), g) for i, g in enumerate(geos)]
        return results

    def _detect_tiled(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Full frame plus overlapping tiles, each at the model's resolution, merged into one set.

        A tile box that touches a border shared with a neighbouring tile is a cut vehicle: when it
        is narrower than the overlap the neighbour sees it whole, and when it is wider the vehicle is
        large enough for the full-frame pass, so with that pass on every such box is dropped (without
        it, only the narrow ones). The rest are merged greedily, best score first, by intersection
        over the smaller box, so a piece of a vehicle and the whole vehicle count once; boxes of one
        pass never suppress each other there (NMS already settled them, and a large box must not
        swallow the cars it overlaps).
        """
        assert self.tile is not None
        if image_bgr.ndim != 3:
            letterbox(image_bgr, self._input_hw)  # raises the usual message for a non-BGR image
        h, w = image_bgr.shape[:2]
        tile_hw = self.tile.size if isinstance(self.tile.size, tuple) else self._input_hw
        windows = tile_windows((h, w), tile_hw, self.tile.overlap)
        if self.tile.full_frame and windows != [(0, 0, h, w)]:
            windows = [(0, 0, h, w), *windows]
        crops = [image_bgr[y0:y1, x0:x1] for (y0, x0, y1, x1) in windows]
        boxes: list[npt.NDArray[np.float32]] = []
        scores: list[npt.NDArray[np.float32]] = []
        classes: list[npt.NDArray[np.int32]] = []
        groups: list[npt.NDArray[np.int32]] = []
        full = self.tile.full_frame
        for (y0, x0, y1, x1), (cand, geo) in zip(windows, self._run_crops(crops), strict=True):
            xyxy = geo.boxes_to_image(cand.xyxy)
            keep = np.ones(len(xyxy), dtype=np.bool_)
            whole_frame = (y0, x0, y1, x1) == (0, 0, h, w)
            big = np.inf if (full and not whole_frame) else 1.0
            ov_x, ov_y = (x1 - x0) * self.tile.overlap * big, (y1 - y0) * self.tile.overlap * big
            bw, bh = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
            if x0 > 0:
                keep &= ~((xyxy[:, 0] <= _EDGE_PX) & (bw < ov_x))
            if x1 < w:
                keep &= ~((xyxy[:, 2] >= (x1 - x0) - _EDGE_PX) & (bw < ov_x))
            if y0 > 0:
                keep &= ~((xyxy[:, 1] <= _EDGE_PX) & (bh < ov_y))
            if y1 < h:
                keep &= ~((xyxy[:, 3] >= (y1 - y0) - _EDGE_PX) & (bh < ov_y))
            offset = np.array([x0, y0, x0, y0], dtype=np.float32)
            boxes.append(xyxy[keep] + offset)
            scores.append(cand.score[keep])
            classes.append(cand.class_id[keep])
            groups.append(np.full(int(keep.sum()), len(groups), dtype=np.int32))
        xyxy_all = np.concatenate(boxes).astype(np.float32, copy=False)
        score_all = np.concatenate(scores).astype(np.float32, copy=False)
        cls_all = np.concatenate(classes).astype(np.int32, copy=False)
        cls = None if self.agnostic_nms else cls_all
        keep_idx = nms(
            xyxy_all,
            score_all,
            self.tile.merge_ios,
            cls,
            max_det=self.max_det,
            metric="ios",
            group=np.concatenate(groups),
        )
        return Detections(xyxy_all[keep_idx], score_all[keep_idx], cls_all[keep_idx], self._names)

    def __repr__(self) -> str:
        h, w = self._input_hw
        family = self._decoder.family
        return f"Detector({str(self._path)!r}, {family}, {w}x{h}, conf={self.confidence}, iou={self.iou})"
