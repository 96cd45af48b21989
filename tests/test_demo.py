"""`cityeye demo` as a user runs it: one command, then the printed URL answers with the sample lot."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_demo_serves_the_sample_lot(tmp_path: Path, broker: str) -> None:
    if broker == "amqtt":
        pytest.importorskip(
            "amqtt", reason="the embedded broker needs the broker extra (pip install 'cityeye[broker]')"
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cityeye",
            "demo",
            "--port",
            str(port),
            "--interval",
            "1",
            "--duration",
            "40",
            "--broker",
            broker,
            "--workdir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + 90
    lines = []
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"(http://127\.0\.0\.1:\d+/v1/parking/nearby\S+)", line)
        if m:
            url = m.group(1)
    try:
        if broker == "mosquitto" and url is None and "not installed" in "".join(lines):
            pytest.skip("Mosquitto is not installed")
        assert url is not None, "".join(lines)
        deadline = time.monotonic() + 30
        while True:
            results = httpx.get(url + "&min_free=0&limit=200", timeout=5).json()["results"]
            if results:
                break
            assert time.monotonic() < deadline, "the demo never reported a zone"
            time.sleep(0.5)
        assert len(results) == 100  # the PUCPR sample's 100 bays
        assert all(not r["stale"] for r in results)
        cams = httpx.get(url.split("/v1/")[0] + "/v1/cameras", timeout=5).json()["cameras"]
        assert cams[0]["status"] in ("online", "streaming")  # the worker's, then the stream's status
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode in (0, 130), proc.returncode
    assert _processes_mentioning(str(tmp_path)) == [], "the demo left processes behind"
    log = (tmp_path / "edge.log").read_text()
    assert "Traceback" not in log, log
    assert "offline" in log or "publishing offline" in log


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found
