"""MQTT with user name and password on a real mosquitto that refuses anonymous clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from connectors.mqtt import MqttConnector
from connectors.records import Sample
from connectors.settings import MqttConfig


async def test_user_password_and_refusal(tmp_path: Path, mosquitto_factory: Any) -> None:
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "twin", "s3cret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "cycler", "c1"], check=True)
    broker = mosquitto_factory(extra_config=f"allow_anonymous false\npassword_file {pw}\n")
    got: list[Any] = []
    good = MqttConnector(MqttConfig(url=broker.url, client_id="auth-good", username="twin", password="s3cret",
                                    topics=["pilotline/+/formation/+/telemetry"]),
                         lambda recs, ack: (got.extend(recs), ack() if ack else None))
    bad = MqttConnector(MqttConfig(url=broker.url, client_id="auth-bad", username="twin", password="wrong"),
                        lambda recs, ack: None)
    good.start()
    bad.start()
    try:
        for _ in range(100):
            if good.state.connected and bad.state.last_error:
                break
            await asyncio.sleep(0.05)
        assert good.state.connected
        assert not bad.state.connected and "refused" in bad.state.last_error, bad.state
        await asyncio.sleep(0.3)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="auth-pub")
        pub.username_pw_set("cycler", "c1")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        msg = {"seq": 1, "time": "2026-11-20T10:00:00Z", "channel": "CH-01", "voltage_V": 3.7}
        pub.publish("pilotline/PL1/formation/CH-01/telemetry", json.dumps(msg), qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        good.stop()
        bad.stop()
    assert [(s.signal, s.value) for s in got if isinstance(s, Sample)] == [("Voltage", 3.7)]


def _tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made with cryptography (what an operator's PKI would issue)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pilotline test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = d / "ca.pem", d / "server.pem", d / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


async def test_tls_with_a_ca_file(tmp_path: Path, mosquitto_factory: Any) -> None:
    ca, cert, key = _tls_files(tmp_path)
    broker = mosquitto_factory(extra_config=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    url = f"mqtts://127.0.0.1:{broker.port}"
    ok = MqttConnector(MqttConfig(url=url, client_id="tls-ok", tls={"enabled": True, "ca_file": ca}),
                       lambda recs, ack: None)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = _tls_files(tmp_path / "other")
    wrong = MqttConnector(MqttConfig(url=url, client_id="tls-wrong-ca", tls={"enabled": True, "ca_file": other_ca}),
                          lambda recs, ack: None)
    ok.start()
    wrong.start()
    try:
        for _ in range(100):
            if ok.state.connected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert ok.state.connected, ok.state
        assert not wrong.state.connected  # a server the configured CA did not sign is refused
    finally:
        ok.stop()
        wrong.stop()


async def test_recommendation_publisher_uses_the_connectors_tls_and_auth(tmp_path: Path,
                                                                         mosquitto_factory: Any) -> None:
    """The twin's publisher is made from the same MqttConfig as the connector: a private CA and a password work for
    both (it used to call ``tls_set()`` with the system CAs and never reached a broker signed by the line's CA)."""
    from connectors.mqtt import MqttPublisher

    ca, cert, key = _tls_files(tmp_path)
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "twin", "s3cret"], check=True)
    broker = mosquitto_factory(extra_config=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
                                            f"allow_anonymous false\npassword_file {pw}\n")
    cfg = MqttConfig(url=f"mqtts://127.0.0.1:{broker.port}", client_id="twin-tls", username="twin",
                     password="s3cret", tls={"enabled": True, "ca_file": ca}, topics=["pilotline/+/recommendations"])
    got: list[Any] = []
    listener = MqttConnector(cfg, lambda recs, ack: (got.append(recs), ack() if ack else None))
    pub = MqttPublisher(cfg)
    listener.start()
    pub.start()
    try:
        for _ in range(200):
            if listener.state.connected and pub.state.connected:
                break
            await asyncio.sleep(0.05)
        assert pub.state.connected, pub.state
        assert listener.state.connected, listener.state
        await asyncio.sleep(0.3)  # the listener's SUBACK
        assert pub.publish("pilotline/PL1/recommendations", json.dumps({"id": 1, "loop": "cathode"}))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        pub.stop()
        listener.stop()
    assert pub.state.messages == 1
    assert got, "the recommendation never reached a subscriber through the TLS broker"
