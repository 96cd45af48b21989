"""Stream ingest speed: our decoder against FFmpeg's, keyframe-only against full, cameras per core.

    python benchmarks/streams.py                       # everything (about 6 minutes)
    python benchmarks/streams.py --quick               # shorter windows, 10 and 50 cameras
    python benchmarks/streams.py --cameras 10 50 100 --window 30 --no-worker

Prints one JSON document (progress on stderr):

- ``decode``: frames per second of ``AVSource`` decoding every frame of a clip (decode only, and
  decode + conversion to BGR arrays, which is what reaches the detector) against
  ``ffmpeg -i FILE -f null -`` on the same file, in the same run, interleaved, with 1 decoder
  thread and with FFmpeg's automatic threading. Wall-clock and CPU-time rates; ``ratio`` is ours
  over FFmpeg's (the goal is >= 0.9).
- ``sampling``: CPU seconds per minute of video for full decoding, keyframe-only decoding of every
  keyframe, and the parking setting (first keyframe after each 10 s).
- ``cameras``: N cameras reading one RTSP mount of the GStreamer server (real time, real footage,
  a session per camera) in keyframe sampling at one frame per 10 s: the CPU of the ingest (supervisors,
  demuxing, keyframe decoding, BGR conversion) per camera and the cameras one core can follow.
- ``worker`` (unless ``--no-worker``): the same N cameras through a whole ``cityeye edge`` process
  (per-camera MQTT connections and spools, the scheduler, the detector on every sampled frame,
  here the cheapest shared model, yolo11n INT8 320) against a real Mosquitto: process CPU per
  camera, frames analysed and dropped.

The clips are the shared traffic videos, repeated with ``ffmpeg -stream_loop -c copy`` (no
re-encoding) so that each timing lasts long enough to measure. Timings on a loaded machine are
noisy: rates are medians of ``--repeats`` interleaved runs, and the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from tqdm import tqdm

from cityeye.streams.frame import Frame
from cityeye.streams.gst_rtsp_server import RtspServer
from cityeye.streams.sources import AVSource, DecodeStats
from cityeye.streams.supervisor import Backoff, StreamState, StreamSupervisor

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = {
    "intel_car_detection": SHARED / "data/traffic/intel_car_detection/car-detection.mp4",
    "ua_detrac_intersection": SHARED / "data/traffic/evadb_ua_detrac_intersection/ua_detrac.mp4",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,width,height,avg_frame_rate,nb_read_packets,has_b_frames",
            "-show_entries",
            "format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    s = info["streams"][0]
    num, den = (int(x) for x in s["avg_frame_rate"].split("/"))
    keys = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    duration = float(info["format"]["duration"])
    return {
        "codec": s["codec_name"],
        "width": s["width"],
        "height": s["height"],
        "fps": round(num / den, 3),
        "frames": int(s["nb_read_packets"]),
        "duration_s": round(duration, 2),
        "b_frames": int(s.get("has_b_frames", 0)) > 0,
        "keyframes": len(keys),
        "keyframe_period_s": round(duration / max(len(keys), 1), 2),
    }


def repeat_clip(src: Path, times: int, out: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            str(times - 1),
            "-i",
            str(src),
            "-an",
            "-c",
            "copy",
            str(out),
        ],
        check=True,
    )
    return out


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_ffmpeg(path: Path, threads: int) -> tuple[float, float]:
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-threads",
        str(threads),
        "-i",
        str(path),
        "-an",
        "-f",
        "null",
        "-",
    ]
    c0, t0 = child_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0, child_cpu() - c0


def time_ours(
    path: Path, threads: int, bgr: bool, sampling: str = "fps", interval: float | None = None
) -> tuple[float, float, DecodeStats]:
    iv = interval if interval is not None else (0.0 if bgr else 1e9)  # 1e9: decode all, convert one
    src = AVSource("bench", str(path), iv, realtime=False, sampling=sampling, decode_threads=threads)  # type: ignore[arg-type]
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in src:
        pass
    return time.perf_counter() - t0, time.process_time() - c0, src.stats


def median_rate(frames: int, samples: list[tuple[float, float]]) -> dict[str, float]:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    return {
        "fps_wall": round(frames / wall, 1),
        "fps_cpu": round(frames / cpu, 1),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
    }


def bench_decode(clips: dict[str, Path], repeats: int) -> list[dict[str, Any]]:
    results = []
    for name, path in clips.items():
        info = probe(path)
        for threads in (1, 0):
            runs: dict[str, list[tuple[float, float]]] = {"ffmpeg": [], "ours": [], "ours_bgr": []}
            for _ in tqdm(range(repeats), desc=f"decode {name} threads={threads or 'auto'}", file=sys.stderr):
                runs["ffmpeg"].append(time_ffmpeg(path, threads))
                wall, cpu, stats = time_ours(path, threads, bgr=False)
                assert stats.frames_decoded == info["frames"], (stats.frames_decoded, info["frames"])
                runs["ours"].append((wall, cpu))
                wall, cpu, _ = time_ours(path, threads, bgr=True)
                runs["ours_bgr"].append((wall, cpu))
            rates = {k: median_rate(info["frames"], v) for k, v in runs.items()}
            results.append(
                {
                    "clip": name,
                    **info,
                    "decoder_threads": threads or "auto",
                    **rates,
                    "ratio_wall": round(rates["ours"]["fps_wall"] / rates["ffmpeg"]["fps_wall"], 3),
                    "ratio_cpu": round(rates["ours"]["fps_cpu"] / rates["ffmpeg"]["fps_cpu"], 3),
                    "ratio_wall_with_bgr": round(
                        rates["ours_bgr"]["fps_wall"] / rates["ffmpeg"]["fps_wall"], 3
                    ),
                }
            )
    return results


def bench_sampling(clips: dict[str, Path], repeats: int) -> list[dict[str, Any]]:
    results = []
    modes = {
        "full_every_frame": ("fps", 0.0),
        "keyframes_all": ("keyframe", 0.0),
        "keyframe_every_10s": ("keyframe", 10.0),
    }
    for name, path in clips.items():
        info = probe(path)
        minutes = info["duration_s"] / 60
        row: dict[str, Any] = {
            "clip": name,
            "keyframe_period_s": info["keyframe_period_s"],
            "video_minutes": round(minutes, 2),
        }
        for mode, (sampling, interval) in modes.items():
            samples = []
            stats = None
            for _ in tqdm(range(repeats), desc=f"sampling {name} {mode}", file=sys.stderr):
                wall, cpu, stats = time_ours(path, 1, True, sampling, interval)
                samples.append((wall, cpu))
            assert stats is not None
            cpu = statistics.median(s[1] for s in samples)
            row[mode] = {
                "cpu_s_per_video_minute": round(cpu / minutes, 4),
                "frames_decoded": stats.frames_decoded,
                "frames_out": stats.frames_emitted,
            }
        row["full_over_keyframe_every_10s"] = round(
            row["full_every_frame"]["cpu_s_per_video_minute"]
            / row["keyframe_every_10s"]["cpu_s_per_video_minute"],
            1,
        )
        results.append(row)
    return results


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FrameCounter:
    """Frames delivered per camera (the supervisors' sink in place of the detector queue)."""

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self._lock = threading.Lock()

    def sink(self, i: int) -> Callable[[Frame], None]:
        def on_frame(frame: Frame) -> None:
            with self._lock:
                self.counts[i] += 1

        return on_frame

    def total(self) -> int:
        with self._lock:
            return sum(self.counts)


def bench_cameras(
    server: RtspServer, counts: list[int], window: float, interval: float
) -> list[dict[str, Any]]:
    results = []
    for n in counts:
        log(f"cameras: {n} RTSP clients, keyframe sampling every {interval:g} s, {window:g} s window")
        counter = FrameCounter(n)
        sups = []
        for i in range(n):
            src = AVSource(
                f"cam{i}",
                server.url("cam"),
                interval,
                sampling="keyframe",
                open_timeout_s=20,
                read_timeout_s=20,
            )
            sups.append(StreamSupervisor(src, counter.sink(i), None, Backoff(1.0, 10.0)))
        t_start = time.monotonic()
        for s in sups:
            s.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(f > 0 for f in counter.counts):
            time.sleep(0.2)
        connected_s = time.monotonic() - t_start
        ready = sum(1 for f in counter.counts if f > 0)
        f0 = counter.total()
        d0 = sum(s.source.stats.frames_decoded for s in sups)
        s0 = sum(s.source.stats.decode_s for s in sups)
        cpu0, srv0, t0 = (
            time.process_time(),
            proc_cpu(server.proc.pid) if server.proc else 0.0,
            time.monotonic(),
        )
        time.sleep(window)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        srv_cpu = (proc_cpu(server.proc.pid) if server.proc else 0.0) - srv0
        got = counter.total() - f0
        decoded = sum(s.source.stats.frames_decoded for s in sups) - d0
        decode_s = sum(s.source.stats.decode_s for s in sups) - s0
        states = [s.state for s in sups]
        reconnects = sum(s.reconnects for s in sups)
        for s in sups:
            s.stop()
        for s in sups:
            s.join(30)
        cores = cpu / wall
        results.append(
            {
                "cameras": n,
                "streaming": sum(1 for st in states if st is StreamState.STREAMING),
                "connected_with_frames": ready,
                "connect_s": round(connected_s, 1),
                "window_s": round(wall, 1),
                "frames_out_per_camera_per_min": round(got / n / wall * 60, 2),
                "frames_decoded_per_camera_per_min": round(decoded / n / wall * 60, 2),
                "decode_ms_per_frame": round(decode_s / max(decoded, 1) * 1000, 2),
                "cpu_cores_used": round(cores, 4),
                "cpu_pct_per_camera": round(cores / n * 100, 3),
                "cameras_per_core": round(n / cores, 0) if cores > 0 else None,
                "reconnects": reconnects,
                "server_cpu_cores": round(srv_cpu / wall, 3),
            }
        )
        log(json.dumps(results[-1]))
    return results


def start_mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def bench_worker(
    server: RtspServer, counts: list[int], window: float, interval: float, tmp: Path, model: Path
) -> list[dict[str, Any]]:
    zones = tmp / "line.geojson"
    zones.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "cityeye:coordinates": "pixel",
                "features": [
                    {
                        "type": "Feature",
                        "id": "l1",
                        "properties": {"kind": "line"},
                        "geometry": {"type": "LineString", "coordinates": [[0, 216], [768, 216]]},
                    }
                ],
            }
        )
    )
    broker, port = start_mosquitto(tmp)
    results = []
    try:
        for n in counts:
            log(f"worker: cityeye edge with {n} RTSP cameras, {window:g} s window")
            metrics_port = _free_port()
            cfg = {
                "site": "bench",
                "mqtt": {"host": "127.0.0.1", "port": port},
                "model": {"path": str(model)},
                "edge": {"metrics_port": metrics_port},
                "cameras": [
                    {
                        "id": f"cam{i}",
                        "source": server.url("cam"),
                        "mode": "traffic",
                        "sampling": "keyframe",
                        "interval_s": interval,
                        "zones": str(zones),
                        "open_timeout_s": 20,
                        "read_timeout_s": 20,
                    }
                    for i in range(n)
                ],
                "health_interval_s": 10,
            }
            site = tmp / f"n{n}" / "site.yaml"  # the MQTT spools go beside it
            site.parent.mkdir()
            site.write_text(yaml.safe_dump(cfg))
            proc = subprocess.Popen(
                [sys.executable, "-m", "cityeye", "edge", "--config", str(site)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=site.parent,
            )
            try:
                url = f"http://127.0.0.1:{metrics_port}/metrics"
                deadline = time.monotonic() + 90
                up = 0
                while time.monotonic() < deadline:
                    try:
                        m = _scrape(url)
                        up = int(m.get("cityeye_camera_up", 0))
                        if up == n and m.get("cityeye_camera_frames_analysed_total", 0) >= n:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(1)
                m0, c0, t0 = _scrape(url), proc_cpu(proc.pid), time.monotonic()
                time.sleep(window)
                m1, cpu, wall = _scrape(url), proc_cpu(proc.pid) - c0, time.monotonic() - t0
                cores = cpu / wall
                d = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1}
                results.append(
                    {
                        "cameras": n,
                        "streaming": int(m1.get("cityeye_camera_up", 0)),
                        "window_s": round(wall, 1),
                        "process_cpu_cores": round(cores, 3),
                        "cpu_pct_per_camera": round(cores / n * 100, 3),
                        "cameras_per_core": round(n / cores, 0) if cores > 0 else None,
                        "analysed_per_camera_per_min": round(
                            d.get("cityeye_camera_frames_analysed_total", 0) / n / wall * 60, 2
                        ),
                        "dropped": int(d.get("cityeye_camera_frames_dropped_total", 0)),
                        "detector_ms_per_frame": round(
                            d.get("cityeye_detector_seconds_total", 0)
                            / max(d.get("cityeye_detector_frames_total", 0), 1)
                            * 1000,
                            2,
                        ),
                        "detector_busy_fraction": round(d.get("cityeye_detector_seconds_total", 0) / wall, 3),
                    }
                )
                log(json.dumps(results[-1]))
            finally:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        broker.terminate()
        broker.wait(10)
    return results


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(url: str) -> dict[str, float]:
    """Sum of each metric over its label sets (all cameras)."""
    sums: dict[str, float] = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            v = float(value)
        except ValueError:
            continue
        if v == v:  # NaN
            sums[name] = sums.get(name, 0.0) + v
    return sums


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="short windows, 10 and 50 cameras, 3 repeats")
    ap.add_argument("--cameras", type=int, nargs="+", default=None, help="camera counts (default 10 50 100)")
    ap.add_argument("--window", type=float, default=None, help="measuring window per camera count, s (30)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between analysed frames")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved decode runs (5)")
    ap.add_argument("--loops", type=int, default=10, help="times each clip is repeated for the decode runs")
    ap.add_argument("--no-worker", action="store_true", help="skip the whole-worker measurement")
    ap.add_argument("--no-rtsp", action="store_true", help="skip the camera-count measurements")
    args = ap.parse_args()
    counts = args.cameras or ([10, 50] if args.quick else [10, 50, 100])
    window = args.window or (15.0 if args.quick else 30.0)
    repeats = args.repeats or (3 if args.quick else 5)
    missing = [str(p) for p in CLIPS.values() if not p.exists()]
    if missing:
        print(json.dumps({"error": f"needs the shared traffic clips: {', '.join(missing)}"}))
        return 2
    out: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "note": "shared 2-core machine, other work running: timings are medians of interleaved runs",
        },
    }
    with tempfile.TemporaryDirectory(prefix="cityeye-bench-") as tmpdir:
        tmp = Path(tmpdir)
        long_clips = {k: repeat_clip(v, args.loops, tmp / f"{k}.mp4") for k, v in CLIPS.items()}
        out["decode"] = bench_decode(long_clips, repeats)
        out["sampling"] = bench_sampling(long_clips, repeats)
        if not args.no_rtsp:
            reason = RtspServer.available()
            if reason:
                out["cameras"] = {"skipped": reason}
            else:
                # 20 minutes of real footage; every client gets its own pipeline (demux and
                # packetise, no encoding: the server costs little). GStreamer's shared media stops
                # serving after clients come and go, so it is not used here.
                feed = repeat_clip(CLIPS["intel_car_detection"], 40, tmp / "feed.mp4")
                server = RtspServer(_free_port(), {"cam": str(feed)}).start()
                try:
                    out["cameras_feed"] = probe(CLIPS["intel_car_detection"])
                    out["cameras"] = bench_cameras(server, counts, window, args.interval)
                    model = SHARED / "models" / "yolo11n_int8_320.onnx"
                    if not args.no_worker and model.exists():
                        out["worker"] = bench_worker(server, counts, window, args.interval, tmp, model)
                finally:
                    server.stop()
    out["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
