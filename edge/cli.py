"""`cityeye edge --config site.yaml`: run the edge worker until its sources end or a signal arrives."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from cityeye.config import load_config

log = logging.getLogger(__name__)


def run_edge(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.metrics_port is not None:
        cfg = cfg.model_copy(update={"edge": cfg.edge.model_copy(update={"metrics_port": args.metrics_port})})
    from cityeye.edge.worker import EdgeWorker  # heavy imports (onnxruntime, av) only when needed

    worker = EdgeWorker(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: publishing offline and flushing before exit", signum)
        worker.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info("edge worker for site %s: %d camera(s)", cfg.site, len(cfg.cameras))
    return worker.run()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("edge", help="run the edge worker (cameras -> detector -> zones -> MQTT)")
    p.add_argument("--config", required=True, help="site YAML file")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (overrides edge.metrics_port; 0 = any free port)",
    )
    p.set_defaults(func=run_edge)
