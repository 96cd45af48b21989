"""`cityeye count --zones LINES.geojson VIDEO`: count line crossings in a video file, offline.

Prints one JSON object on stdout::

    {"video": path, "frames": n, "fps_analysed": f,
     "lines": [{"id": ..., "counts": {"<direction>": {"car": n, "motorcycle": n, "bus": n,
                                                      "truck": n, "bicycle": n}}}]}

plus ``frames_analysed``, ``stride``, ``wall_s``, ``areas`` (entries/exits of polygon zones, when
the file has any), ``speed_kmh`` per line (calibrated cameras) and, with ``--crossings``, every
counted crossing with its frame number (to check a count against a hand count).

It runs the same pipeline as the edge worker (:class:`cityeye.zones.counting.CountingPipeline`),
decoding every frame and analysing every ``--stride``-th one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from cityeye.zones.config import TrafficConfig
from cityeye.zones.counting import COUNTED_CLASSES, CountingPipeline, Crossing, empty_counts
from cityeye.zones.lines import lines_from_zones

if TYPE_CHECKING:
    from cityeye.vision.detector import Detector
    from cityeye.zones.calibration import Calibration
    from cityeye.zones.model import Zone


@dataclass
class CountResult:
    video: str
    frames: int
    frames_analysed: int
    stride: int
    wall_s: float
    counts: dict[str, dict[str, dict[str, int]]]
    """zone id -> direction -> class -> crossings."""
    crossings: list[Crossing] = field(default_factory=list)
    line_ids: list[str] = field(default_factory=list)
    area_ids: list[str] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent in decode, detect and track+count (for the benchmark)."""

    @property
    def fps_analysed(self) -> float:
        return self.frames_analysed / self.wall_s if self.wall_s > 0 else 0.0

    def speeds(self, zone_id: str) -> dict[str, float] | None:
        out: dict[str, list[float]] = {}
        for c in self.crossings:
            if c.zone_id == zone_id and c.speed_kmh is not None:
                out.setdefault(c.direction, []).append(c.speed_kmh)
        return {d: round(float(np.median(v)), 1) for d, v in out.items()} or None

    def to_json(self, with_crossings: bool = False) -> dict[str, Any]:
        def zone(zid: str) -> dict[str, Any]:
            d: dict[str, Any] = {"id": zid, "counts": self.counts[zid]}
            sp = self.speeds(zid)
            if sp:
                d["speed_kmh"] = sp
            return d

        doc: dict[str, Any] = {
            "video": self.video,
            "frames": self.frames,
            "fps_analysed": round(self.fps_analysed, 2),
            "lines": [zone(z) for z in self.line_ids],
        }
        if self.area_ids:
            doc["areas"] = [zone(z) for z in self.area_ids]
        doc.update(frames_analysed=self.frames_analysed, stride=self.stride, wall_s=round(self.wall_s, 3))
        if with_crossings:
            doc["crossings"] = [asdict(c) for c in self.crossings]
        return doc


def decode_frames(path: str, stride: int = 1) -> Iterator[tuple[int, float, npt.NDArray[np.uint8] | None]]:
    """(index, stream seconds, BGR image or None) for every frame; only every ``stride``-th frame is
    converted to an image (the conversion costs as much as decoding at 960x540)."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"{path}: cannot be opened as a video ({exc})") from None
    try:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else i / rate
            image = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8) if i % stride == 0 else None
            yield i, t, image
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: decoding failed at a corrupt frame ({exc})") from None
    finally:
        container.close()


def count_video(
    video: str | Path,
    zones: list[Zone],
    detector: Detector,
    config: TrafficConfig | None = None,
    stride: int = 1,
    calibration: Calibration | None = None,
    progress: bool = False,
    max_frames: int | None = None,
) -> CountResult:
    from tqdm import tqdm

    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    lines = lines_from_zones(zones)
    areas = [z for z in zones if z.kind in ("space", "area")]
    if not lines and not areas:
        raise ValueError("the zones file has no line (or polygon) zones to count on")
    pipe = CountingPipeline(lines, areas, config, calibration)
    counts = {z: empty_counts(d) for z, d in pipe.zone_directions.items()}
    crossings: list[Crossing] = []
    frames = analysed = 0
    stage = {"decode": 0.0, "detect": 0.0, "track_count": 0.0}
    t_start = time.perf_counter()
    bar = tqdm(desc="count", unit="frame", file=sys.stderr, disable=not progress or None)
    try:
        t0 = time.perf_counter()
        for index, t_s, image in decode_frames(str(video), stride):
            t1 = time.perf_counter()
            stage["decode"] += t1 - t0
            frames += 1
            bar.update(1)
            if image is not None:
                dets = detector.detect(image)
                t2 = time.perf_counter()
                new = pipe.step(dets, t_s, index, (image.shape[1], image.shape[0]))
                stage["detect"] += t2 - t1
                stage["track_count"] += time.perf_counter() - t2
                analysed += 1
                for c in new:
                    counts[c.zone_id][c.direction][c.vehicle] += 1
                crossings += new
            if max_frames is not None and frames >= max_frames:
                break
            t0 = time.perf_counter()
    finally:
        bar.close()
    for c in pipe.finish():
        counts[c.zone_id][c.direction][c.vehicle] += 1
        crossings.append(c)
    return CountResult(
        video=str(video), frames=frames, frames_analysed=analysed, stride=stride,
        wall_s=time.perf_counter() - t_start, counts=counts, crossings=crossings,
        line_ids=[ln.id for ln in lines], area_ids=[a.id for a in areas], stage_s=stage,
    )  # fmt: skip


def _traffic_config(args: argparse.Namespace) -> TrafficConfig:
    data: dict[str, Any] = {}
    if args.traffic_config:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.traffic_config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"--traffic-config {args.traffic_config}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--traffic-config {args.traffic_config}: expected a mapping of settings")
        data.update(loaded)
    if args.anchor:
        data["anchor"] = args.anchor
    try:
        return TrafficConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"traffic settings: {problems}") from None


def run_count(args: argparse.Namespace) -> int:
    from cityeye.cli import UsageError
    from cityeye.vision.detector import Detector
    from cityeye.zones.calibration import load_calibration
    from cityeye.zones.model import load_zones

    if not Path(args.video).is_file():
        raise UsageError(f"video file {args.video} not found")
    if args.stride < 1:
        raise UsageError(f"--stride must be 1 or more, got {args.stride}")
    calibration = load_calibration(args.calibration) if args.calibration else None
    zones = load_zones(args.zones, calibration)
    if not any(z.kind == "line" for z in zones) and not args.areas:
        raise UsageError(
            f'{args.zones} has no line zones; draw LineStrings with properties.kind "line" '
            "(or import them: cityeye zones import-labelme), or pass --areas to count polygon entries"
        )
    if not args.areas:
        zones = [z for z in zones if z.kind == "line"]
    cfg = _traffic_config(args)
    conf = args.conf if args.conf is not None else cfg.track_low_thresh
    detector = Detector(args.model, imgsz=args.imgsz, confidence=max(conf, 1e-3))
    result = count_video(args.video, zones, detector, cfg, args.stride, calibration, progress=True)
    doc = result.to_json(with_crossings=args.crossings)
    print(json.dumps(doc) if args.json else json.dumps(doc, indent=1))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "count",
        help="count vehicles crossing lines in a video (per class and direction)",
        description="Detect, track (ByteTrack) and count line crossings in a video file; one JSON object "
        "on stdout, progress on stderr. Classes: " + ", ".join(COUNTED_CLASSES) + ".",
    )
    p.add_argument("video", metavar="VIDEO", help="video file (anything FFmpeg decodes)")
    p.add_argument("--zones", required=True, help='GeoJSON with line zones (LineString, kind "line")')
    p.add_argument("--calibration", help="calibration JSON: WGS84 zones, and speeds in km/h")
    p.add_argument("--model", help="ONNX detector (default: $CITYEYE_MODEL, else the shipped model)")
    p.add_argument("--imgsz", type=int, help="detector input size (dynamic models only)")
    p.add_argument("--conf", type=float, help="detector confidence (default: the tracker's low threshold)")
    p.add_argument("--stride", type=int, default=1, help="analyse every N-th frame (default 1 = all)")
    p.add_argument("--anchor", choices=("center", "bottom"), help="box point that crosses lines")
    p.add_argument(
        "--traffic-config", metavar="YAML", help="traffic settings, as under a camera's `traffic:` key"
    )
    p.add_argument("--areas", action="store_true", help="also count entries/exits of polygon zones")
    p.add_argument("--crossings", action="store_true", help="list every crossing with its frame number")
    p.add_argument("--json", action="store_true", help="compact JSON on one line")
    p.set_defaults(func=run_count)
