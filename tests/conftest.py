"""Shared fixtures: the ../shared data folder and a real Mosquitto broker on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from cityeye.broker import free_port, wait_port

REPO = Path(__file__).resolve().parents[1]

# Parking state of every edge process a test starts goes to a throwaway folder, never the user's
# ~/.local/state/cityeye (inherited by subprocesses).
os.environ.setdefault("CITYEYE_STATE_DIR", tempfile.mkdtemp(prefix="cityeye-test-state-"))
SHARED = REPO.parent / "shared"


T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T], timeout: float = 15.0, poll_s: float = 0.02) -> T:
    """Poll until fn() is truthy: ingest and edges run on other threads and processes, so tests
    wait for an outcome, never sleep blindly."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value {value!r})")
        time.sleep(poll_s)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason if that data is not on this machine."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the shared data folder beside the repository); it is absent here")
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


class Broker:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.proc = proc


def start_mosquitto(tmp: Path, port: int | None = None) -> Broker:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does this)")
    port = port or free_port()
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
    except TimeoutError:
        proc.kill()
        raise
    return Broker(port, proc)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path)
    yield broker
    broker.proc.terminate()
    broker.proc.wait(timeout=10)
