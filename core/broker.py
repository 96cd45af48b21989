"""An MQTT broker for the demo: Mosquitto when installed, else the pure-Python amqtt.

Production sites run their own Mosquitto (see README); this only spares a demo user the install.
Run the embedded one alone with ``python -m cityeye.broker --port 1883``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    exe = shutil.which("mosquitto")
    if exe:
        return exe
    return next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)


ENV_BROKER = "CITYEYE_DEMO_BROKER"


def free_port() -> int:
    """A TCP port nothing listens on now (loopback), for brokers and servers started on one box."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port, else TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def start_broker(port: int, workdir: Path, which: str = "auto") -> tuple[subprocess.Popen[bytes], str]:
    """Start a loopback-only broker; returns the process and which broker it is.

    ``which`` is ``auto`` (Mosquitto if installed, else amqtt), ``mosquitto`` or ``amqtt``.
    """
    if which not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"broker {which!r} is not one of auto, mosquitto, amqtt")
    exe = find_mosquitto() if which != "amqtt" else None
    if which == "mosquitto" and exe is None:
        raise RuntimeError("Mosquitto is not installed (apt-get install mosquitto)")
    log = (workdir / "broker.log").open("ab")
    if exe:
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        return subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log), "mosquitto"
    try:
        import amqtt  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "no MQTT broker found: install Mosquitto (apt-get install mosquitto) or the embedded "
            "broker (pip install 'cityeye[broker]')"
        ) from None
    cmd = [sys.executable, "-m", "cityeye.broker", "--port", str(port)]
    return subprocess.Popen(cmd, stdout=log, stderr=log), "amqtt"


async def _serve(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "auth": {"allow-anonymous": True},
    }
    broker = Broker(config)
    await broker.start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
