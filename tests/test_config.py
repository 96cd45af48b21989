"""Site configuration: every mistake gives a message with the key path and line, and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cityeye.config import ConfigError, load_config, parse_config

GOOD = """\
site: danang
mqtt:
  host: broker.local
  port: 8883
cameras:
  - id: cam-1
    source: rtsp://10.0.0.5/stream1
    mode: parking
    interval_s: 10
  - id: cam-2
    source: frames/
    mode: traffic
api:
  port: 9000
"""


def test_good_config_parses_and_resolves_relative_paths(tmp_path: Path) -> None:
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(GOOD)
    cfg = load_config(cfg_file)
    assert cfg.site == "danang"
    assert cfg.mqtt.port == 8883
    assert [c.id for c in cfg.cameras] == ["cam-1", "cam-2"]
    assert cfg.cameras[0].source == "rtsp://10.0.0.5/stream1"
    assert cfg.cameras[1].source == str(tmp_path / "frames/")
    assert cfg.api.port == 9000


def test_unknown_key_names_path_and_line() -> None:
    text = GOOD.replace("    interval_s: 10\n", "    interval_s: 10\n    intervall: 5\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="site.yaml")
    msg = str(err.value)
    assert "cameras.0.intervall" in msg
    assert "site.yaml:10" in msg
    assert "unknown key" in msg


def test_bad_value_names_path_and_line() -> None:
    text = GOOD.replace("port: 8883", "port: eighty")
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="site.yaml")
    assert "mqtt.port" in str(err.value)
    assert "site.yaml:4" in str(err.value)


def test_bad_mode_and_duplicate_camera() -> None:
    with pytest.raises(ConfigError, match=r"cameras\.1\.mode"):
        parse_config(GOOD.replace("mode: traffic", "mode: parkin"))
    with pytest.raises(ConfigError, match="used twice"):
        parse_config(GOOD.replace("id: cam-2", "id: cam-1"))


def test_not_yaml_and_not_mapping() -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        parse_config("site: [unclosed")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config("- a\n- b\n")


def test_password_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.password"):
        parse_config("mqtt:\n  password: hunter2\n")
    monkeypatch.setenv("CITYEYE_MQTT_PASSWORD", "s3cret")
    assert parse_config("mqtt: {}\n").mqtt.password == "s3cret"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("site: x\nbogus: 1\n", "bogus: unknown key"),
        ("api:\n  port: 0\n", "api.port"),
    ],
)
def test_cli_exit_code_and_message(tmp_path: Path, content: str | None, expected: str) -> None:
    cfg = tmp_path / "site.yaml"
    if content is not None:
        cfg.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "cityeye", "edge", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
