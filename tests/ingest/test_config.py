"""The example config loads, environment overrides nest and win, mistakes are refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "ingest.example.yaml"


def test_example_loads_and_equals_the_defaults() -> None:
    cfg = load_config(EXAMPLE, environ={})
    assert cfg == Config(), "the example documents the defaults; keep them in step"


def test_every_model_field_appears_in_the_example() -> None:
    text = EXAMPLE.read_text()
    missing: list[str] = []

    def walk(model: type, prefix: str) -> None:
        for name, f in model.model_fields.items():  # type: ignore[attr-defined]
            if prefix == "" and name == "service":
                continue  # the twin service's section, documented by its owner
            if f"{name}:" not in text:
                missing.append(prefix + name)
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, prefix + name + ".")

    walk(Config, "")
    assert not missing, f"options not documented in {EXAMPLE.name}: {missing}"


def test_environment_overrides_nest_and_win(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("influx:\n  url: http://file:1\n  batch_size: 100\nline: {id: PL9}\n")
    cfg = load_config(f, environ={
        "PILOTLINE__INFLUX__URL": "http://env:2", "PILOTLINE__INFLUX__VERSION": "2",
        "PILOTLINE__MQTT__TOPICS": '["a/#", "b/+"]', "PILOTLINE__SERVICE__HTTP__PORT": "8000",
        "PILOTLINE__OPCUA__DISCOVERY__BROWSE_PATH": "PilotLine/Coating", "OTHER": "x",
    })
    assert cfg.influx.url == "http://env:2" and cfg.influx.version == 2 and cfg.influx.batch_size == 100
    assert cfg.line.id == "PL9" and cfg.mqtt.topics == ["a/#", "b/+"]
    assert int(cfg.model_dump()["service"]["http"]["port"]) == 8000
    assert cfg.opcua.discovery.browse_path == "PilotLine/Coating"


@pytest.mark.parametrize(
    ("yaml_text", "env", "key"),
    [
        ("influx: {urll: x}\n", {}, "influx.urll"),
        ("influx: {version: 3}\n", {}, "influx.version"),
        ("spool: {when_full: explode}\n", {}, "spool.when_full"),
        ("opcua: {security_policy: Basic256Sha256}\n", {}, "security_mode"),
        ("mqtt: {url: 'http://x'}\n", {}, "mqtt.url"),
        ("", {"PILOTLINE__INFLUX__BATCH_SIZE": "many"}, "influx.batch_size"),
        ("- a\n- b\n", {}, "mapping"),
        ("influx: [\n", {}, "YAML"),
        ("", {"PILOTLINE__MQTT__TOPICS": "[oops"}, "JSON"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, env: dict[str, str], key: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(f, environ=env)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="example"):
        load_config(tmp_path / "nope.yaml", environ={})
