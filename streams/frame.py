"""The value that travels from a source to the detector."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Frame:
    camera_id: str
    index: int
    timestamp: datetime
    """Wall-clock (UTC) time of the frame: stream time mapped onto the time the stream was opened."""
    image: npt.NDArray[np.uint8]
    """BGR, HxWx3, as OpenCV expects."""
    source_name: str = ""
    """File name for image folders, so offline results can be traced to their input."""
    stream_time_s: float | None = None
    """Presentation time in the stream (seconds) that ``timestamp`` was mapped from; None for images."""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])
