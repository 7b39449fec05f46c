"""The example config is generated from the models and loads, environment overrides nest and win, mistakes are
refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from connectors.sample_config import UndocumentedOption, commented_yaml
from twin.config import SIMULATOR_LINE, Config, ConfigError, LineConfig, load_config
from twin.sample_configs import INGEST_HEADER, ingest_example

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "ingest.example.yaml"


def test_committed_example_is_what_the_models_generate() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == ingest_example(), "regenerate with: python -m twin.sample_configs"


def test_example_loads_over_the_default_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # line.description is relative to the working directory
    cfg = load_config(EXAMPLE, environ={})
    assert cfg.line.description is not None and cfg.line.description.resolve() == SIMULATOR_LINE
    # the description is the base under the file: what the example leaves to it (products) comes from the line
    assert cfg.service.control.products == Config().service.control.products != {}


def test_example_shows_the_defaults() -> None:
    """Without a line description under it, the example is exactly the models' defaults, every section included."""
    cfg = load_config(EXAMPLE, environ={"PILOTLINE__LINE__DESCRIPTION": "null"})
    assert cfg == Config(line=LineConfig(description=None)), "regenerate with: python -m twin.sample_configs"


def test_an_option_without_description_is_refused() -> None:
    class Item(BaseModel):
        documented: int = Field(default=1, description="has one")
        silent: int = 2

    class WithSection(Config):
        extra: int = 3

    class WithItems(Config):
        extras: list[Item] = Field(default=[], description="items whose fields are described one by one")

    class Required(BaseModel):
        needed: str = Field(description="a required option with no example")

    with pytest.raises(UndocumentedOption, match=r"^extra has no description"):
        commented_yaml(WithSection, INGEST_HEADER)
    with pytest.raises(UndocumentedOption, match=r"^extras\[\]\.silent has no description"):
        commented_yaml(WithItems, INGEST_HEADER)
    with pytest.raises(UndocumentedOption, match=r"^needed is required and has no example"):
        commented_yaml(Required, INGEST_HEADER)


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
