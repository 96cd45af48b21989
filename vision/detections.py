"""Detections as a small vectorised value: parallel numpy arrays, never a list of dicts in hot paths."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# COCO ids of the vehicle classes cityeye reasons about (COCO-80 order, as Ultralytics and YOLOX use).
VEHICLE_LABELS: tuple[str, ...] = ("bicycle", "car", "motorcycle", "bus", "truck")


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes in original-image pixels (x1, y1, x2, y2)."""

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4) or self.confidence.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                f"Detections arrays disagree: xyxy {self.xyxy.shape}, confidence {self.confidence.shape}, "
                f"class_id {self.class_id.shape}"
            )

    @classmethod
    def empty(cls, names: dict[int, str] | None = None) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32), names or {}
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        return Detections(self.xyxy[mask], self.confidence[mask], self.class_id[mask], self.names)

    def label(self, i: int) -> str:
        k = int(self.class_id[i])
        return self.names.get(k, str(k))

    def class_mask(self, labels: tuple[str, ...] | frozenset[str]) -> npt.NDArray[np.bool_]:
        ids = [k for k, v in self.names.items() if v in labels]
        return np.isin(self.class_id, np.asarray(ids, dtype=np.int32))

    def vehicles(self) -> Detections:
        return self[self.class_mask(VEHICLE_LABELS)]

    def ground_points(self) -> npt.NDArray[np.float32]:
        """Bottom-centre of each box: where the vehicle meets the road, the point that zones test."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) * 0.5
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)
