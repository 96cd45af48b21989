"""deploy/ stays consistent with the code: every command, option, config key, path and user it names exists.

The files cannot run here (no Docker daemon, no systemd as PID 1), so each claim they make is
checked against the code instead: commands through cityeye's own argument parser, site files
through the config loader, the ACL against `cityeye acl`, units through `systemd-analyze verify`
where it exists. tests/test_deploy_broker.py runs Mosquitto with the broker files for real.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from cityeye.cli import build_parser
from cityeye.config import SiteConfig, load_config
from cityeye.edge.spool_cli import acl_text
from cityeye.events.config import ENV_MQTT_PASSWORD, ENV_MQTT_PASSWORD_FILE, ENV_MQTT_USERNAME

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KNOWN_ENV = {ENV_MQTT_PASSWORD, ENV_MQTT_PASSWORD_FILE, ENV_MQTT_USERNAME}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def check_cityeye_command(argv: list[str]) -> Any:
    """Parse a `cityeye ...` command line with the real parser; unknown commands or options fail."""
    assert PurePosixPath(argv[0]).name == "cityeye", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(argv)}` is not a valid cityeye command line")


def site_file(container_path: str | Path, mounts: list[str]) -> Path:
    """The deploy/ file a container path is mounted from."""
    for m in mounts:
        src, dst, *_ = m.split(":")
        if dst == str(container_path):
            return (DEPLOY / src).resolve()
    pytest.fail(f"{container_path} is not mounted from a file")


def mounted(path: PurePosixPath, mounts: list[str]) -> bool:
    for m in mounts:
        dst = PurePosixPath(m.split(":")[1])
        if path == dst or dst in path.parents:
            return True
    return False


def edge_cfg() -> SiteConfig:
    return load_config(DEPLOY / "edge.yaml")


def min_stop_s(cfg: SiteConfig) -> float:
    """Every camera may use its whole flush timeout on SIGTERM (they stop one after another)."""
    return len(cfg.cameras) * cfg.mqtt.spool.flush_timeout_s + 10


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    assert m, value
    return float(m[1]) * (60 if m[2] == "min" else 1)


def test_site_files_load_and_agree() -> None:
    edge, api = edge_cfg(), load_config(DEPLOY / "api.yaml")
    assert edge.site == api.site
    assert edge.mqtt.tls is not None and edge.mqtt.tls.insecure is False
    assert edge.mqtt.port == 8883 and api.mqtt.port == 1883
    assert edge.mqtt.spool.dir == Path("/var/lib/cityeye/spool")
    assert edge.mqtt.username and api.mqtt.username
    assert len(edge.cameras) >= 1


def test_compose_commands_configs_and_health_checks() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"broker", "api", "edge"}
    for name, svc in services.items():
        assert "healthcheck" in svc, f"service {name} has no health check"
        assert svc.get("restart") == "unless-stopped"
    for name in ("api", "edge"):
        svc = services[name]
        args = check_cityeye_command(svc["command"])
        cfg = load_config(site_file(args.config, svc["volumes"]))
        assert set(svc.get("environment", {})) <= KNOWN_ENV
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"]
            assert (DEPLOY / doc["secrets"][secret]["file"]).parent.name == "secrets"
        assert services[name]["depends_on"]["broker"]["condition"] == "service_healthy"
        assert cfg.mqtt.host == "broker"
    edge = services["edge"]
    cfg = edge_cfg()
    health = check_cityeye_command(edge["healthcheck"]["test"][1:])
    assert (health.command, health.spool_command, health.config) == (
        "spool",
        "status",
        "/etc/cityeye/edge.yaml",
    )
    assert mounted(PurePosixPath(cfg.mqtt.spool.dir), edge["volumes"]), "the spool must live on a volume"
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file is not None
    assert mounted(PurePosixPath(cfg.mqtt.tls.ca_file), edge["volumes"])
    assert any(v.startswith("edge-spool:") for v in edge["volumes"]) and "edge-spool" in doc["volumes"]
    assert edge["stop_signal"] == "SIGTERM"
    assert seconds(edge["stop_grace_period"]) >= min_stop_s(cfg)
    api = services["api"]
    api_args = check_cityeye_command(api["command"])
    assert api_args.client_id, "the API needs a fixed client id for a persistent session"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


def test_broker_config_is_closed_and_persistent_and_files_are_mounted() -> None:
    conf = mosquitto_conf()
    assert conf["allow_anonymous"] == ["false"]
    assert conf["persistence"] == ["true"]
    assert sorted(conf["listener"]) == ["1883", "8883"]
    broker = compose()["services"]["broker"]
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile", "persistence_location"):
        assert mounted(PurePosixPath(conf[key][0]), broker["volumes"]), f"{key} {conf[key][0]} is not mounted"
    assert broker["ports"] == ["8883:8883"], "only the TLS listener may be published"
    hc = broker["healthcheck"]["test"][1]
    assert "-u health" in hc and "$$SYS/broker/uptime" in hc


def acl_rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_acl_is_what_cityeye_acl_writes_for_the_site_files() -> None:
    edge, api = edge_cfg(), load_config(DEPLOY / "api.yaml")
    assert edge.mqtt.username and api.mqtt.username
    expected = acl_text(
        edge.site, [c.id for c in edge.cameras], edge.mqtt.username, api.mqtt.username, "health"
    )
    assert acl_rules((DEPLOY / "mosquitto" / "acl").read_text()) == acl_rules(expected)
    # the documented regeneration command is a valid command line
    readme = (DEPLOY / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("cityeye acl --config deploy/edge.yaml"))
    check_cityeye_command(shlex.split(line.split(">")[0]))


def test_acl_command_prints_the_file() -> None:
    cmd = [sys.executable, "-m", "cityeye", "acl", "--config", str(DEPLOY / "edge.yaml")]
    out = subprocess.run(
        [*cmd, "--user", "edge-danang-01", "--api-user", "cityeye-api", "--health-user", "health"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert acl_rules(out.stdout) == acl_rules((DEPLOY / "mosquitto" / "acl").read_text())
    bad = subprocess.run(
        [*cmd, "--user", "two words"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "no spaces" in bad.stderr


def units() -> dict[str, configparser.ConfigParser]:
    out = {}
    for path in sorted((DEPLOY / "systemd").iterdir()):
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        cp.read_string(path.read_text())
        out[path.name] = cp
    return out


def test_systemd_units_run_real_commands_with_enough_time_to_flush() -> None:
    u = units()
    assert set(u) == {
        "cityeye-edge.service",
        "cityeye-api.service",
        "cityeye-edge-health.service",
        "cityeye-edge-health.timer",
    }
    edge = u["cityeye-edge.service"]["Service"]
    args = check_cityeye_command(shlex.split(edge["ExecStart"]))
    assert (args.command, args.config) == ("edge", "/etc/cityeye/edge.yaml")
    cfg = edge_cfg()
    # StateDirectory=cityeye is /var/lib/cityeye: the spool must be inside it to survive restarts
    assert edge["StateDirectory"] == "cityeye"
    assert Path("/var/lib/cityeye") in cfg.mqtt.spool.dir.parents
    assert seconds(edge["TimeoutStopSec"]) >= min_stop_s(cfg)
    assert edge["KillSignal"] == "SIGTERM" and edge["Restart"] == "always"
    assert edge["Environment"].split("=")[0] in KNOWN_ENV
    api = u["cityeye-api.service"]["Service"]
    api_args = check_cityeye_command(shlex.split(api["ExecStart"]))
    assert api_args.command == "api" and api_args.client_id
    load_config(DEPLOY / Path(api_args.config).name)
    health = u["cityeye-edge-health.service"]["Service"]
    inner = shlex.split(shlex.split(health["ExecStart"])[2])  # /bin/sh -c '<cityeye ...> || systemctl ...'
    status = check_cityeye_command(inner[: inner.index(">/dev/null")])
    assert (status.spool_command, status.config) == ("status", args.config)
    assert "systemctl restart cityeye-edge.service" in health["ExecStart"]


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (systemd package)")
    # verify insists that executables exist: point /opt/cityeye/venv/bin at real ones
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    wrapper = bindir / "cityeye"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m cityeye "$@"\n')
    wrapper.chmod(0o755)
    for path in (DEPLOY / "systemd").iterdir():
        (tmp_path / path.name).write_text(path.read_text().replace("/opt/cityeye/venv/bin", str(bindir)))
    names = sorted(str(p) for p in tmp_path.iterdir() if p.suffix in (".service", ".timer"))
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    out = subprocess.run(
        [exe, "verify", *names], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    problems = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_dockerfile_installs_the_package_and_runs_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "pip install --no-cache-dir /src" in text
    assert re.search(r"^USER cityeye$", text, re.M)
    for svc in ("api", "edge"):
        assert compose()["services"][svc]["build"]["dockerfile"] == "deploy/Dockerfile"
