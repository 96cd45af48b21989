"""Detector settings (the `model:` section of a site configuration).

Everything a site may need to swap a model family or tune speed lives here, so no code changes
when a city moves from the shipped YOLOv8n to YOLOX, a YOLOv5 export or an end-to-end model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DecoderName = Literal["auto", "ultralytics", "yolov5", "yolox", "end2end"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]

STRIDE = 32
"""Largest stride of every supported head: input sides must be multiples of it."""


def _check_side(v: int, what: str) -> int:
    if v < STRIDE or v > 2048 or v % STRIDE:
        raise ValueError(f"{what} {v} must be a multiple of {STRIDE} between {STRIDE} and 2048 (e.g. 640)")
    return v


def parse_hw(value: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) from 640, "384x640" (height x width), [384, 640] or (384, 640)."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"size {value!r} is not N or HxW (e.g. 640 or 384x640)") from None
    else:
        nums = [int(v) for v in value]
    if len(nums) == 1:
        return nums[0], nums[0]
    if len(nums) != 2:
        raise ValueError(f"size {value!r} must be one number or height and width (e.g. 384x640)")
    return nums[0], nums[1]


class TileConfig(BaseModel):
    """Tiled inference for wide views where vehicles are only a few pixels tall at the model's size."""

    model_config = ConfigDict(extra="forbid")

    size: int | tuple[int, int] | None = Field(
        default=None,
        description="Tile size in original-image pixels, N or [height, width]; default: the model input "
        "size, so each tile is seen at full resolution.",
    )
    overlap: float = Field(
        default=0.2, ge=0.0, lt=0.9, description="Fraction of a tile shared with its neighbour."
    )
    full_frame: bool = Field(
        default=True, description="Also run the whole frame, so vehicles larger than a tile stay whole."
    )
    merge_ios: float = Field(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="Same-class boxes from different passes whose intersection covers more than this "
        "fraction of the smaller box are one vehicle (keeps the best-scored box).",
    )

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        if v is None:
            return None
        if isinstance(v, int | str | list | tuple):
            h, w = parse_hw(v)
            if min(h, w) < 64:
                raise ValueError(f"tile size {h}x{w} is too small; use at least 64 pixels per side")
            return (h, w)
        return v


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(
        default=None,
        description="ONNX detector file, or the name of a model in the model cache. Default: "
        "$CITYEYE_MODEL, else the shipped yolov8n_dq.onnx.",
    )
    imgsz: int | tuple[int, int] | None = Field(
        default=None,
        description="Input size, N or [height, width] (e.g. [384, 640] for 16:9 frames), multiples of 32; "
        "default: the model's own. A fixed-size model gets a re-shaped copy in the model cache (see "
        "auto_reshape), or make one with `cityeye models reshape`.",
    )
    decoder: DecoderName = Field(
        default="auto",
        description="Output head family: ultralytics (YOLOv8/11, (1, 4+nc, N)), yolov5 ((1, N, 5+nc) with "
        "objectness), yolox (raw grid (1, N, 5+nc)), end2end ((1, N, 6) boxes: YOLOv10/YOLO26/RT-DETR "
        "style); auto tells them apart from the output shape and metadata.",
    )
    names: list[str] | dict[int, str] | None = Field(
        default=None,
        description="Class names by id; default: the model's `names` metadata, else COCO-80 for 80-class "
        "models. Required for models with other classes and no metadata.",
    )
    classes: list[str] | None = Field(
        default=None,
        description="Keep only detections of these labels (e.g. [car, truck, bus, motorcycle]); "
        "default: all classes.",
    )
    confidence: float = Field(default=0.25, gt=0.0, lt=1.0, description="Minimum detection confidence.")
    iou: float = Field(default=0.7, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS.")
    agnostic_nms: bool = Field(
        default=False, description="Suppress overlapping boxes across classes (one box per vehicle)."
    )
    max_det: int = Field(default=300, ge=1, le=10000, description="Maximum detections per image.")
    batch: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Frames per session run in detect_batch (cameras sharing one run); more than 1 needs "
        "a model with a dynamic batch axis (`cityeye models reshape --batch dynamic`).",
    )
    auto_reshape: bool = Field(
        default=True,
        description="When a fixed-shape model cannot take imgsz or batch, derive a graph-edited copy in the "
        "model cache (checked against the original; needs the onnx package) instead of refusing.",
    )
    raw_pixels: bool = Field(
        default=True,
        description="Feed pixel bytes instead of a float image (models/rawinput.py): a derived copy in the "
        "model cache, checked against the file, that drops a static INT8 model's first quantisation or "
        "takes a run-time-quantised model's image quantisation from the detector (both bit-identical), "
        "or casts the bytes inside a float model and folds the 1/255 into its first convolution "
        "(outputs within 1e-4 relative). Saves ~0.2 ms per frame at 384x640.",
    )
    byte_scores: bool = Field(
        default=True,
        description="For statically quantised Ultralytics heads, run a derived copy (model cache) that "
        "outputs the class scores (and, where the box decode is float, the box bins) as the bytes the "
        "head computes and take the sigmoid and box decode of candidates only, instead of "
        "dequantising, sigmoiding and decoding every anchor: same candidates and classes, scores "
        "within 1e-6, boxes within 1e-3 px (checked when derived), ~7 % faster runs at 384x640. "
        "Only with decoder: auto.",
    )
    logit_head: bool = Field(
        default=True,
        description="For float Ultralytics heads, run a derived copy (model cache) that outputs the class "
        "logits and the box branch's raw bins, and decode boxes and sigmoid for the candidates only "
        "instead of for every anchor inside the model: same candidates and classes, boxes within 1e-3 px "
        "and scores within 1e-6 (checked when derived), ~8 % faster runs at 384x640. Only with decoder: "
        "auto.",
    )
    tile: TileConfig | None = Field(
        default=None, description="Tiled inference (overlapping slices merged by NMS); default: off."
    )
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0 = library default).")
    inter_threads: int = Field(
        default=0, ge=0, description="onnxruntime inter-op threads (0 = library default; parallel mode only)."
    )
    graph_optimization: GraphOptimization = Field(
        default="all", description="onnxruntime graph optimisation level."
    )
    parallel_execution: bool = Field(
        default=False, description="onnxruntime parallel execution mode (rarely faster for CNNs)."
    )
    stop_spinning: bool = Field(
        default=True,
        description="Stop onnxruntime's worker threads from busy-waiting once a run returns (they still "
        "spin between the operators of a run). Frees the cores for decoding and pre/post-processing "
        "between frames; false gives the library's default.",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["cpu"],
        description="Execution providers in order of preference: cpu, cuda, tensorrt, openvino (or full "
        "onnxruntime names); `auto` picks the best installed one. A named provider that is not "
        "installed is an error.",
    )

    @field_validator("imgsz", mode="before")
    @classmethod
    def _imgsz(cls, v: object) -> object:
        if v is None:
            return None
        if isinstance(v, int | str | list | tuple):
            h, w = parse_hw(v)
            _check_side(h, "imgsz height")
            _check_side(w, "imgsz width")
            return h if h == w and isinstance(v, int) else (h, w)
        return v

    @model_validator(mode="after")
    def _classes_not_empty(self) -> ModelConfig:
        if self.classes is not None and not self.classes:
            raise ValueError("classes is an empty list: leave it out to keep all classes")
        return self

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """imgsz as (height, width), or None for the model's own size."""
        return None if self.imgsz is None else parse_hw(self.imgsz)
