"""Detector settings (the `model:` section of a site configuration)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(
        default=None,
        description="ONNX detector file. Default: $CITYEYE_MODEL, else the shipped yolov8n_dq.onnx.",
    )
    imgsz: int | None = Field(
        default=None, ge=32, le=2048, description="Square input size; default: the model's own input size."
    )
    confidence: float = Field(default=0.25, gt=0.0, lt=1.0, description="Minimum detection confidence.")
    iou: float = Field(default=0.7, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS.")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0 = library default).")
