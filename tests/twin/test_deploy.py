"""Deployment files, checked as far as this machine allows: compose structure (and `docker compose config` when the
client has the compose plugin), the image runs as non-root with a health check, the Kubernetes configs are valid
twin configurations, and the Mosquitto password file + ACL work on a real broker."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from deploy.localstack import Mosquitto, find_binary
from twin.config import load_config

REPO = Path(__file__).resolve().parents[2]
SECRETS = {"INFLUXDB_ADMIN_PASSWORD": "x" * 12, "INFLUXDB_TOKEN": "tok", "MQTT_TWIN_PASSWORD": "tw",
           "MQTT_SIMULATOR_PASSWORD": "sim", "OPCUA_OPERATOR_PASSWORD": "op"}


def test_compose_structure() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    svc = doc["services"]
    assert {"influxdb", "mosquitto", "simulator", "twin", "grafana"} <= set(svc)
    init = svc["influxdb"]["environment"]
    for key in ("DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"):
        assert "${" in init[key], f"{key} must come from the environment"
    assert svc["influxdb"]["image"].startswith("influxdb:2")
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "password_file" in conf and "acl_file" in conf
    assert svc["twin"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert svc["grafana"]["profiles"] == ["grafana"]
    assert (REPO / "deploy/grafana/provisioning/datasources/influxdb.yaml").is_file()


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
    return r.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker client here has no compose plugin "
                    "(`docker compose version` fails); the structure test above still runs")
def test_docker_compose_config() -> None:  # pragma: no cover - depends on the machine
    env = {**SECRETS, "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr


def test_dockerfile_non_root_with_healthcheck() -> None:
    text = (REPO / "deploy/Dockerfile").read_text()
    users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
    assert users and not users[-1].startswith(("0", "root"))
    assert "HEALTHCHECK" in text and "/health" in text
    assert '"twin", "run"' in text
    cfg = load_config(REPO / "deploy/config/twin.docker.yaml", environ={})
    assert cfg.influx.version == 2 and cfg.service.http.host == "0.0.0.0"


def test_k8s_manifests(tmp_path: Path) -> None:
    lines = sorted((REPO / "deploy/k8s").glob("line-*.yaml"))
    assert len(lines) >= 2, "manifests for several lines"
    for f in lines:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        kinds = {d["kind"] for d in docs}
        assert {"ConfigMap", "Deployment", "Service"} <= kinds
        cm = next(d for d in docs if d["kind"] == "ConfigMap")
        for key in ("twin.yaml", "cyclers.yaml"):
            p = tmp_path / f"{f.stem}-{key}"
            p.write_text(cm["data"][key])
            load_config(p, environ={})  # a valid twin configuration (unknown keys would fail)
        cyclers = yaml.safe_load(cm["data"]["cyclers.yaml"])
        assert all(t.startswith("$share/") for t in cyclers["mqtt"]["topics"])
        deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        main = next(d for n, d in deps.items() if not n.endswith("-cyclers"))
        ing = next(d for n, d in deps.items() if n.endswith("-cyclers"))
        assert main["spec"]["replicas"] == 1 and main["spec"]["strategy"]["type"] == "Recreate"
        assert ing["spec"]["replicas"] >= 2
        env = ing["spec"]["template"]["spec"]["containers"][0]["env"]
        cid = next(e for e in env if e["name"] == "PILOTLINE__MQTT__CLIENT_ID")
        assert cid["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        for d in deps.values():
            assert d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        c = main["spec"]["template"]["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_mosquitto_password_file_and_acl(tmp_path: Path) -> None:
    """The compose broker's ACL on a real mosquitto: anonymous refused, the twin may not publish trace events."""
    passwd = tmp_path / "passwd"
    tool = find_binary("mosquitto_passwd")
    subprocess.run([tool, "-b", "-c", str(passwd), "twin", "tw"], check=True, capture_output=True)
    subprocess.run([tool, "-b", str(passwd), "simulator", "sim"], check=True, capture_output=True)
    assert "tw" not in passwd.read_text().split(":", 1)[1]  # hashed
    acl = tmp_path / "acl"
    acl.write_text((REPO / "deploy/mosquitto/acl").read_text())
    broker = Mosquitto(tmp_path / "mq", extra_config=f"allow_anonymous false\npassword_file {passwd}\n"
                                                   f"acl_file {acl}\n")
    broker.start()
    try:
        line = "L" + uuid.uuid4().hex[:5].upper()
        got: list[str] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sub-" + line)
        sub.username_pw_set("twin", "tw")
        sub.on_message = lambda c, u, m: got.append(m.topic)
        subscribed = threading.Event()
        sub.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
        sub.connect(broker.host, broker.port)
        sub.subscribe(f"pilotline/{line}/#", qos=1)
        sub.loop_start()
        assert subscribed.wait(10), "no SUBACK from the broker"

        def publish(user: str | None, pw: str | None, topic: str) -> bool:
            """Connect (waiting for the broker's CONNACK, accepted or refused), publish at QoS 1 if accepted."""
            connack: list[Any] = []
            answered = threading.Event()
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}")
            c.on_connect = lambda cl, u, flags, rc, props: (connack.append(rc), answered.set())
            if user:
                c.username_pw_set(user, pw)
            c.connect(broker.host, broker.port)
            c.loop_start()
            try:
                assert answered.wait(10), "no CONNACK from the broker"
                accepted = not connack[0].is_failure
                if accepted:
                    c.publish(topic, b"{}", qos=1).wait_for_publish(5)
                return accepted
            finally:
                c.loop_stop()
                c.disconnect()

        assert not publish(None, None, f"pilotline/{line}/trace")  # anonymous is refused
        assert not publish("twin", "wrong", f"pilotline/{line}/trace")
        assert publish("twin", "tw", f"pilotline/{line}/trace")  # connects, but the ACL drops it
        assert publish("simulator", "sim", f"pilotline/{line}/formation/CH-01/telemetry")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the dropped trace message would have arrived before the telemetry one
        sub.loop_stop()
        sub.disconnect()
        assert got == [f"pilotline/{line}/formation/CH-01/telemetry"], got
    finally:
        broker.stop()
