"""Parking state on disk, so a restarted edge worker keeps its spaces, dwell times and overstays.

One small JSON file per camera (``<state_dir>/<site>/<camera>.json``), written atomically
(temporary file + ``os.replace``) so a crash mid-write leaves the previous file whole. A file
that cannot be read is moved aside (``.corrupt``) with a warning and the camera starts fresh:
a bad state file must never stop a camera.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_STATE_DIR = "CITYEYE_STATE_DIR"
STATE_VERSION = 1


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cityeye"


def state_path(state_dir: Path | None, site: str, camera: str) -> Path:
    return (state_dir or default_state_dir()) / site / f"{camera}.json"


def save_state(path: Path, spaces: dict[str, Any], saved_at: datetime, **meta: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": STATE_VERSION, **meta, "saved_at": saved_at.isoformat(), "spaces": spaces}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path, now: datetime, max_age_s: float) -> dict[str, Any] | None:
    """The saved spaces, or None when there is no file, it is too old, or it is unreadable."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise ValueError(
                f"version {doc.get('version') if isinstance(doc, dict) else None!r}, expected {STATE_VERSION}"
            )
        saved_at = datetime.fromisoformat(doc["saved_at"])
        spaces = doc["spaces"]
        if not isinstance(spaces, dict):
            raise ValueError("'spaces' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(path.name + ".corrupt")
        log.warning("parking state %s is unreadable (%s); moved to %s, starting fresh", path, exc, aside)
        path.replace(aside)
        return None
    age = (now - saved_at).total_seconds()
    if age > max_age_s:
        log.info("parking state %s is %.0f s old (limit %.0f s); starting fresh", path, age, max_age_s)
        return None
    return spaces
