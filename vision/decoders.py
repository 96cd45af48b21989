"""Raw model output -> candidate boxes, one decoder per detection-head family.

A decoder also carries the family's preprocessing (`LetterboxSpec`): feeding YOLOX an Ultralytics
tensor (RGB, /255, centred) runs without error and silently finds almost nothing, so the pair is
chosen together from the model's own output shape and metadata, never configured separately.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from cityeye.models.registry import ModelError
from cityeye.vision.letterbox import LetterboxSpec

COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

STRIDES: tuple[int, ...] = (8, 16, 32)
SCORE_QUANT_KEY = "cityeye_score_quant"
"""Metadata of a byte-score copy (models/scorehead.py): each stride's [scale, zero point]."""
BIN_QUANT_KEY = "cityeye_bin_quant"
"""Metadata of a byte-score copy whose first output is the box bins' bytes: each stride's
[scale, zero point], reg_max and the strides."""
FLOAT_HEAD_KEY = "cityeye_float_head"
"""Metadata of a logit-head copy (models/floathead.py): how its first output holds the boxes."""


@dataclass(frozen=True, slots=True)
class Candidates:
    """Decoded boxes in model-input pixels (xyxy), already above the confidence threshold."""

    xyxy: npt.NDArray[np.float32]
    score: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.score)


class Decoder(Protocol):
    """One head family: its preprocessing, whether NMS is still needed, and the decode itself."""

    family: ClassVar[str]
    preprocess: ClassVar[LetterboxSpec]
    needs_nms: ClassVar[bool]

    @property
    def num_classes(self) -> int | None: ...

    def decode(self, output: RawOutput, confidence: float) -> Candidates: ...


def _cxcywh_to_xyxy(b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    half = b[:, 2:4] * np.float32(0.5)
    out: npt.NDArray[np.float32] = np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)
    return out.astype(np.float32, copy=False)


RawOutput = npt.NDArray[Any] | tuple[npt.NDArray[Any], ...]
"""What a session run gives: the one output most heads have, or several (`UltralyticsQuantizedDecoder`)."""


def take(raw: RawOutput, i: int) -> RawOutput:
    """Image `i`'s (1, ...) slice of a batch's raw output."""
    return tuple(r[i : i + 1] for r in raw) if isinstance(raw, tuple) else raw[i : i + 1]


def _columns_to_xyxy(sub: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(k, 4) xyxy boxes from the (4+, k) candidate columns of a channels-first head (cx, cy, w, h)."""
    half = sub[2:4] * np.float32(0.5)
    xyxy = np.concatenate([sub[0:2] - half, sub[0:2] + half]).T  # a view of (4, k), no copy
    return xyxy.astype(np.float32, copy=False)


def _check_batch(output: RawOutput, family: str) -> npt.NDArray[np.float32]:
    if isinstance(output, tuple) or output.ndim != 3 or output.shape[0] != 1:
        shape = [o.shape for o in output] if isinstance(output, tuple) else output.shape
        raise ModelError(f"{family} decoder expects one output of shape (1, A, B), got {shape}")
    batch: npt.NDArray[np.float32] = output[0]
    return batch


@dataclass(frozen=True, slots=True)
class UltralyticsDecoder:
    """YOLOv8/YOLO11 head: (1, 4+nc, anchors), cx,cy,w,h in input pixels then sigmoided class scores."""

    num_classes: int
    family: ClassVar[str] = "ultralytics"
    preprocess: ClassVar[LetterboxSpec] = LetterboxSpec(center=True, rgb=True, normalize=True)
    needs_nms: ClassVar[bool] = True

    def decode(self, output: RawOutput, confidence: float) -> Candidates:
        pred = _check_batch(output, self.family)  # (4+nc, N)
        best = pred[4:].max(axis=0)
        idx = (best > confidence).nonzero()[0]
        # One gather of the few candidate columns; every later step works on those alone. Right after
        # an inference each numpy call costs a few microseconds, so the steps are kept few.
        sub = pred[:, idx]
        cls = sub[4:].argmax(axis=0).astype(np.int32)
        return Candidates(_columns_to_xyxy(sub), best[idx], cls)


def _grid(input_hw: tuple[int, int], strides: Sequence[int]) -> tuple[npt.NDArray[np.float32], ...]:
    xy, st = [], []
    for s in strides:
        h, w = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        xy.append(np.stack([xv.ravel(), yv.ravel()], axis=1))
        st.append(np.full((h * w, 1), s, dtype=np.float32))
    return np.concatenate(xy), np.concatenate(st)


def anchor_count(input_hw: tuple[int, int], strides: Sequence[int] = STRIDES) -> int:
    """Number of grid cells over all strides: the anchor axis length of anchor-free YOLO heads."""
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in strides)


@dataclass(frozen=True, slots=True)
class YoloxDecoder:
    """YOLOX raw grid head: (1, anchors, 5+nc); xy = (p + grid) * s, wh = exp(p) * s, score = obj * cls.

    Megvii's export feeds BGR 0..255 without normalisation, resized top-left and padded with 114.
    """

    num_classes: int
    input_hw: tuple[int, int]
    strides: tuple[int, ...] = STRIDES
    _grid: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    _stride: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    family: ClassVar[str] = "yolox"
    preprocess: ClassVar[LetterboxSpec] = LetterboxSpec(center=False, rgb=False, normalize=False)
    needs_nms: ClassVar[bool] = True

    def __post_init__(self) -> None:
        grid, stride = _grid(self.input_hw, self.strides)
        object.__setattr__(self, "_grid", grid)
        object.__setattr__(self, "_stride", stride)

    def decode(self, output: RawOutput, confidence: float) -> Candidates:
        pred = _check_batch(output, self.family)  # (N, 5+nc)
        if len(pred) != len(self._grid):
            raise ModelError(
                f"YOLOX output has {len(pred)} anchors but a {self.input_hw} input with strides "
                f"{self.strides} gives {len(self._grid)}; the model's input size and head disagree"
            )
        cls_scores = pred[:, 5:]
        best_cls = cls_scores.max(axis=1)
        best = pred[:, 4] * best_cls  # obj * max(cls) == max(obj * cls) since obj >= 0
        idx = np.flatnonzero(best > confidence)
        p, s = pred[idx], self._stride[idx]
        cxcy = (p[:, 0:2] + self._grid[idx]) * s
        wh = np.exp(p[:, 2:4]) * s
        cls = cls_scores[idx].argmax(axis=1).astype(np.int32)
        xyxy = _cxcywh_to_xyxy(np.concatenate([cxcy, wh], axis=1))
        return Candidates(xyxy, best[idx].astype(np.float32), cls)


def _two_outputs(
    output: RawOutput, family: str, num_classes: int, second: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Image 0's (boxes or bins, per-class `second`) of a head copy's two outputs."""
    if not isinstance(output, tuple) or len(output) != 2 or output[1].shape[:2] != (1, num_classes):
        got = [o.shape for o in output] if isinstance(output, tuple) else output.shape
        raise ModelError(f"{family} decoder expects (boxes or bins, {second}) outputs, got {got}")
    return output[0][0], output[1][0]


@dataclass(frozen=True, slots=True, eq=False)
class DflGrid:
    """The anchor grid of a YOLOv8/11 head, to decode candidates' raw box bins as the graph would
    for every anchor: a softmax over each side's bins, their expected index as the distance from
    the anchor centre, then centre and size times the stride."""

    anchors: npt.NDArray[np.float32]
    """(2, N) anchor centres in grid cells."""
    stride: npt.NDArray[np.float32]
    reg_max: int = 16

    @classmethod
    def of(cls, input_hw: tuple[int, int], head: Mapping[str, Any]) -> DflGrid:
        """The grid for `input_hw` from a copy's metadata (`strides`, `reg_max`)."""
        grid, stride = _grid(input_hw, tuple(int(s) for s in head.get("strides", STRIDES)))
        anchors = np.ascontiguousarray((grid + np.float32(0.5)).T)
        return cls(anchors, stride.reshape(-1), int(head.get("reg_max", 16)))

    def boxes(self, bins: npt.NDArray[np.float32], idx: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """(4, k) cx, cy, w, h in input pixels from the candidates' (4 * reg_max, k) bins."""
        b = bins.reshape(4, self.reg_max, -1)
        e = np.exp(b - b.max(axis=1, keepdims=True))
        dist = (e * np.arange(self.reg_max, dtype=np.float32)[:, None]).sum(axis=1) / e.sum(axis=1)
        a = self.anchors[:, idx]
        lt, rb = a - dist[0:2], a + dist[2:4]
        s = self.stride[idx]
        out: npt.NDArray[np.float32] = np.concatenate([(lt + rb) / np.float32(2.0) * s, (rb - lt) * s])
        return out.astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class ByteBins:
    """Box bins that come as bytes: the grid to decode them and, per anchor, its stride's
    dequantisation scale and zero point."""

    grid: DflGrid
    scale: npt.NDArray[np.float32]
    zero_point: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, eq=False)
class UltralyticsQuantizedDecoder:
    """A YOLOv8/11 head whose class scores come as the quantised bytes (models/scorehead.py).

    Outputs: boxes (1, 4, N) as in the float head, or the box bins' bytes (1, 4 * reg_max, N)
    when `bins` is set; scores (1, nc, N) uint8, each anchor's byte dequantised with its stride's
    scale and zero point. The sigmoid is monotonic, so the best byte is the best class and a
    per-anchor byte threshold finds the candidates; the sigmoid is taken of those only and the
    float test `score > confidence` then decides, as in the float head. Bins are dequantised
    exactly as DequantizeLinear does ((q - zero point) * scale in float32) for the candidates only.
    """

    num_classes: int
    scale: npt.NDArray[np.float32]
    """Per anchor: its stride's dequantisation scale."""
    zero_point: npt.NDArray[np.float32]
    bins: ByteBins | None = None
    family: ClassVar[str] = "ultralytics-u8scores"
    preprocess: ClassVar[LetterboxSpec] = LetterboxSpec(center=True, rgb=True, normalize=True)
    needs_nms: ClassVar[bool] = True
    _thresholds: dict[float, npt.NDArray[np.int16]] = field(default_factory=dict, repr=False, compare=False)

    def _threshold(self, confidence: float) -> npt.NDArray[np.int16]:
        """Per anchor, the largest byte certainly below `confidence` (one step of margin for rounding)."""
        thr = self._thresholds.get(confidence)
        if thr is None:
            if confidence <= 0.0:
                thr = np.full(len(self.scale), -1, dtype=np.int16)
            else:
                logit = np.log(confidence / (1.0 - confidence))
                zp, scale = self.zero_point.astype(np.float64), self.scale.astype(np.float64)
                below = np.floor(zp + logit / scale) - 1
                thr = np.clip(below, -1, 255).astype(np.int16)
            if len(self._thresholds) < 8:
                self._thresholds[confidence] = thr
        return thr

    def decode(self, output: RawOutput, confidence: float) -> Candidates:
        first, scores = _two_outputs(output, self.family, self.num_classes, "byte scores")
        best = scores.max(axis=0)
        idx = (best > self._threshold(confidence)).nonzero()[0]
        # Dequantised exactly as DequantizeLinear does ((q - zero point) * scale in float32).
        logit = (best[idx].astype(np.float32) - self.zero_point[idx]) * self.scale[idx]
        score = _sigmoid(logit)
        keep = score > confidence
        idx, score = idx[keep], score[keep]
        cls = scores[:, idx].argmax(axis=0).astype(np.int32)
        if self.bins is None:
            return Candidates(_columns_to_xyxy(first[:, idx]), score, cls)
        bins = (first[:, idx].astype(np.float32) - self.bins.zero_point[idx]) * self.bins.scale[idx]
        return Candidates(_columns_to_xyxy(self.bins.grid.boxes(bins, idx)), score, cls)


@functools.lru_cache(maxsize=16)
def _logit_floor(confidence: float) -> float:
    """The logit just below `confidence` (our sigmoid and onnxruntime's differ by ~1e-7), once per value."""
    floor = confidence - 1e-5
    return float(np.float32(np.log(floor / (1.0 - floor)))) if floor > 0 else -np.inf


def _sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = np.exp(-x)
    np.add(out, np.float32(1.0), out=out)
    return np.divide(np.float32(1.0), out, out=out)


@dataclass(frozen=True, slots=True, eq=False)
class UltralyticsLogitDecoder:
    """A float YOLOv8/11 head cut before its per-anchor sigmoid and box decode (models/floathead.py).

    Outputs: class logits (1, nc, N) and either finished boxes (1, 4, N) cx,cy,w,h or the box
    branch's raw bins (1, 4 * reg_max, N), decoded here for the candidates only, as the graph does
    for every anchor: a softmax over each side's bins, their expected index as the distance from
    the anchor centre, then centre and size times the stride. The sigmoid is monotonic, so the best
    logit is the best class, and anchors below the threshold's logit (less a margin for rounding)
    are dropped before any sigmoid is taken; the float test `score > confidence` then decides.
    """

    num_classes: int
    grid: DflGrid | None
    """The anchor grid for a bins head; None when the boxes come finished."""
    family: ClassVar[str] = "ultralytics-logits"
    preprocess: ClassVar[LetterboxSpec] = LetterboxSpec(center=True, rgb=True, normalize=True)
    needs_nms: ClassVar[bool] = True

    def decode(self, output: RawOutput, confidence: float) -> Candidates:
        first, logits = _two_outputs(output, self.family, self.num_classes, "class logits")
        best = logits.max(axis=0)
        idx = (best > _logit_floor(confidence)).nonzero()[0]
        score = _sigmoid(best[idx])
        keep = score > confidence
        idx, score = idx[keep], score[keep]
        cls = logits[:, idx].argmax(axis=0).astype(np.int32)
        sub = first[:, idx] if self.grid is None else self.grid.boxes(first[:, idx], idx)
        return Candidates(_columns_to_xyxy(sub), score, cls)


def logit_head_decoder(
    input_hw: tuple[int, int], metadata: Mapping[str, str], num_classes: int
) -> UltralyticsLogitDecoder:
    """The decoder of a logit-head copy, with anchor centres and strides for a bins head."""
    try:
        head = json.loads(metadata[FLOAT_HEAD_KEY])
        kind = head["boxes"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"logit-head model without valid {FLOAT_HEAD_KEY} metadata: {exc}") from exc
    return UltralyticsLogitDecoder(num_classes, None if kind == "xywh" else DflGrid.of(input_hw, head))


def quantised_score_decoder(
    input_hw: tuple[int, int], metadata: Mapping[str, str], num_classes: int
) -> UltralyticsQuantizedDecoder:
    """The decoder of a byte-score copy, its per-stride scales and zero points spread over the anchors."""
    try:
        scores = json.loads(metadata[SCORE_QUANT_KEY])
        head = json.loads(metadata[BIN_QUANT_KEY]) if BIN_QUANT_KEY in metadata else None
        scale, zero = _per_anchor(input_hw, scores)
        bins = None
        if head is not None:
            bins = ByteBins(DflGrid.of(input_hw, head), *_per_anchor(input_hw, head["params"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(
            f"byte-score model without valid {SCORE_QUANT_KEY} / {BIN_QUANT_KEY} metadata: {exc}"
        ) from exc
    return UltralyticsQuantizedDecoder(num_classes, scale, zero, bins)


def _per_anchor(
    input_hw: tuple[int, int], params: Sequence[Sequence[float]]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Each stride's [scale, zero point] repeated over its anchors."""
    if len(params) != len(STRIDES):
        raise ValueError(f"{len(params)} strides' quantisation parameters, expected {len(STRIDES)}")
    counts = [(input_hw[0] // s) * (input_hw[1] // s) for s in STRIDES]
    scale = np.repeat(np.array([float(p[0]) for p in params], np.float32), counts)
    zero = np.repeat(np.array([float(p[1]) for p in params], np.float32), counts)
    return scale, zero


@dataclass(frozen=True, slots=True)
class Yolov5Decoder:
    """YOLOv5/v7-style decoded head: (1, 3 * cells, 5+nc) rows of cx, cy, w, h (input pixels), obj, cls.

    Ultralytics' YOLOv5 filters on objectness first, then on obj * cls; both are done here so a
    box whose class score alone would pass is still dropped when the model doubts it is an object.
    """

    num_classes: int
    family: ClassVar[str] = "yolov5"
    preprocess: ClassVar[LetterboxSpec] = LetterboxSpec(center=True, rgb=True, normalize=True)
    needs_nms: ClassVar[bool] = True

    def decode(self, output: RawOutput, confidence: float) -> Candidates:
        pred = _check_batch(output, self.family)  # (N, 5+nc)
        idx = np.flatnonzero(pred[:, 4] > confidence)
        p = pred[idx]
        scores = p[:, 5:] * p[:, 4:5]
        cls = scores.argmax(axis=1)
        best = scores[np.arange(len(p)), cls]
        keep = best > confidence
        return Candidates(
            _cxcywh_to_xyxy(p[keep, :4]), best[keep].astype(np.float32), cls[keep].astype(np.int32)
        )


@dataclass(frozen=True, slots=True)
class EndToEndDecoder:
    """NMS-free / NMS-inside exports: (1, N, 6) rows of x1, y1, x2, y2, score, class in input pixels."""

    num_classes: int | None = None
    family: ClassVar[str] = "end2end"
    preprocess: ClassVar[LetterboxSpec] = LetterboxSpec(center=True, rgb=True, normalize=True)
    needs_nms: ClassVar[bool] = False

    def decode(self, output: RawOutput, confidence: float) -> Candidates:
        pred = _check_batch(output, self.family)
        keep = pred[:, 4] > confidence
        rows = pred[keep]
        return Candidates(
            np.ascontiguousarray(rows[:, :4], dtype=np.float32),
            rows[:, 4].astype(np.float32),
            np.rint(rows[:, 5]).astype(np.int32),
        )


def class_names(
    metadata: Mapping[str, str],
    num_classes: int | None,
    override: Sequence[str] | Mapping[int, str] | None = None,
) -> dict[int, str]:
    """Names from the configuration, else Ultralytics' `names` metadata, else COCO-80 for 80 classes.

    A model with another class count and no names is refused: its ids would reach the occupancy
    rule as "0", "1", ... and no vehicle would ever be found, which looks like an empty car park.
    """
    if override is not None:
        names = dict(override) if isinstance(override, Mapping) else dict(enumerate(override))
        names = {int(k): str(v) for k, v in names.items()}
        if num_classes is not None and len(names) != num_classes:
            raise ModelError(
                f"model.names lists {len(names)} classes but the model has {num_classes}; give one name "
                "per class, in the model's class order"
            )
        return names
    raw = metadata.get("names")
    if raw:
        try:
            parsed = ast.literal_eval(raw)
        except (ValueError, SyntaxError) as exc:
            raise ModelError(
                f"model metadata 'names' is not a Python dict literal ({exc}): {raw[:80]!r}; "
                "set model.names in the configuration, or re-export the model"
            ) from None
        if isinstance(parsed, dict):
            return {int(k): str(v) for k, v in parsed.items()}
        if isinstance(parsed, list | tuple):
            return {i: str(v) for i, v in enumerate(parsed)}
        raise ModelError(
            f"model metadata 'names' must be a dict or list of class names, got {type(parsed).__name__}"
        )
    if num_classes is None or num_classes == len(COCO80_NAMES):
        return dict(enumerate(COCO80_NAMES))
    raise ModelError(
        f"the model has {num_classes} classes and no 'names' metadata, so cityeye cannot tell which "
        f"class is a car; set model.names (a list of {num_classes} names in class order) in the "
        "configuration"
    )


SUPPORTED_LAYOUTS = (
    "Ultralytics YOLOv8/11 (1, 4+nc, anchors), YOLOv5 (1, 3*anchors, 5+nc), YOLOX (1, anchors, 5+nc) or "
    "end-to-end (1, N, 6) x1,y1,x2,y2,score,class"
)
FAMILIES = ("ultralytics", "yolov5", "yolox", "end2end")


def _forced(family: str, input_hw: tuple[int, int], a: int, b: int) -> Decoder:
    """The configured family, after checking that the output really has its layout."""
    shape = (1, a, b)
    anchors = anchor_count(input_hw)
    if family == "ultralytics":
        if a <= 4 or b < a:
            raise ModelError(f"decoder ultralytics expects (1, 4+nc, anchors) but the model outputs {shape}")
        return UltralyticsDecoder(num_classes=a - 4)
    if family == "yolov5":
        if b <= 5 or a < b:
            raise ModelError(f"decoder yolov5 expects (1, boxes, 5+nc) but the model outputs {shape}")
        return Yolov5Decoder(num_classes=b - 5)
    if family == "yolox":
        if b <= 5 or a != anchors:
            raise ModelError(
                f"decoder yolox expects (1, {anchors}, 5+nc) for a {input_hw[1]}x{input_hw[0]} input "
                f"(one row per grid cell at strides {STRIDES}), but the model outputs {shape}; check imgsz"
            )
        return YoloxDecoder(num_classes=b - 5, input_hw=input_hw)
    if family == "end2end":
        if b != 6:
            raise ModelError(
                f"decoder end2end expects (1, N, 6) x1,y1,x2,y2,score,class; model outputs {shape}"
            )
        return EndToEndDecoder()
    raise ModelError(f"unknown decoder {family!r}; choose auto or one of {', '.join(FAMILIES)}")


def select_decoder(
    input_hw: tuple[int, int],
    output_shape: Sequence[int],
    metadata: Mapping[str, str],
    family: str = "auto",
) -> Decoder:
    """The decoder for a detection model: `family` when configured, else from the output shape.

    The anchor count that a 8/16/32-stride grid gives for this input size tells a channels-first
    Ultralytics head from an anchors-first YOLOX head even for 1- or 2-class models, where the
    two small axes alone would be ambiguous; three rows per cell is a YOLOv5 anchor-based head.
    YOLOX and a YOLOv5 export at strides that give the same count cannot be told apart by shape:
    that is what the `decoder` setting is for.
    """
    task = metadata.get("task", "detect")
    if task != "detect":
        raise ModelError(f"the model's task is {task!r}; cityeye needs a 'detect' model: {SUPPORTED_LAYOUTS}")
    if len(output_shape) != 3 or not isinstance(output_shape[0], int) or output_shape[0] < 1:
        raise ModelError(f"unsupported output shape {tuple(output_shape)}; expected {SUPPORTED_LAYOUTS}")
    _, a, b = (int(d) for d in output_shape)
    if family != "auto":
        return _forced(family, input_hw, a, b)
    anchors = anchor_count(input_hw)
    if metadata.get("end2end", "").lower() == "true" or (b == 6 and a not in (anchors, 3 * anchors)):
        if b != 6:
            raise ModelError(f"end-to-end model output {tuple(output_shape)} has {b} columns, expected 6")
        return EndToEndDecoder()
    if b == anchors and a > 4:
        return UltralyticsDecoder(num_classes=a - 4)
    if a == anchors and b > 5:
        return YoloxDecoder(num_classes=b - 5, input_hw=input_hw)
    if a == 3 * anchors and b > 5:
        return Yolov5Decoder(num_classes=b - 5)
    raise ModelError(
        f"cannot tell the head family of output {tuple(output_shape)} for a "
        f"{input_hw[1]}x{input_hw[0]} input ({anchors} anchors at strides {STRIDES}); "
        f"supported: {SUPPORTED_LAYOUTS}. Set model.decoder to the family, and for a model with a "
        "dynamic input, set imgsz to its export size"
    )
