"""The commented sample configuration of the OPC UA connector (``sample.yaml`` beside this file), generated from the
settings model, so that it documents every option with its default and cannot drift from the code.

Each option comes with its ``Field`` description as a comment and its default as the value; nested sections
(``discovery``, ``deadband``) are written out, list items (``nodes``, ``groups``) are described field by field.
An option without a description is refused: documenting it is part of adding it.

Regenerate with ``python -m connectors.opcua.sample_config > connectors/opcua/sample.yaml``;
``tests/ingest/test_opcua_sample_config.py`` checks that the committed file is current and loads into ``OpcuaConfig``.
"""

from __future__ import annotations

import sys
import textwrap
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from connectors.settings import OpcuaConfig

WIDTH = 120

HEADER = """\
# The OPC UA connector's options, each with its default: the `opcua:` section of the ingest and twin configuration
# (config/ingest.example.yaml shows every section). Generated from connectors/settings.py (OpcuaConfig) by
# `python -m connectors.opcua.sample_config > connectors/opcua/sample.yaml`: edit the descriptions there, not here.
"""


def sample_yaml(model: type[BaseModel] = OpcuaConfig, section: str = "opcua") -> str:
    """``model``'s options as the commented YAML section ``section``: descriptions as comments, defaults as values."""
    out = [HEADER.rstrip("\n"), f"{section}:"]
    _write_fields(model, section, 2, out)
    return "\n".join(out) + "\n"


def _write_fields(model: type[BaseModel], path: str, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for name, field in model.model_fields.items():
        _comment(_description(field, f"{path}.{name}"), pad, out)
        nested = _model_of(field.annotation)
        if nested is not None and not field.is_required() and isinstance(_default(field), BaseModel):
            out.append(f"{pad}{name}:")
            _write_fields(nested, f"{path}.{name}", indent + 2, out)
            continue
        out.append(f"{pad}{name}: {_yaml_value(_dumped_default(field))}")
        item = _list_item_model(field.annotation)
        if item is not None:
            _comment(f"Each item of {name}:", pad, out)
            for item_name, item_field in item.model_fields.items():
                default = "required" if item_field.is_required() else \
                    f"default {_yaml_value(_dumped_default(item_field))}"
                _comment(f"{item_name} ({default}): {_description(item_field, f'{path}.{name}[].{item_name}')}",
                         pad, out, first="  ", rest="    ")


def options_table(model: type[BaseModel] = OpcuaConfig, section: str = "opcua") -> str:
    """``model``'s options as a Markdown table (option, default, description) for the connector's README."""
    rows = ["| option | default | what it does |", "| --- | --- | --- |"]
    listed: set[type[BaseModel]] = set()  # an item model is listed once (groups[].nodes are opcua.nodes' fields)

    def walk(m: type[BaseModel], path: str) -> None:
        for name, field in m.model_fields.items():
            key = f"{path}{name}"
            nested = _model_of(field.annotation)
            if nested is not None and not field.is_required() and isinstance(_default(field), BaseModel):
                walk(nested, key + ".")
                continue
            default = "required" if field.is_required() else f"`{_yaml_value(_dumped_default(field))}`"
            text = _description(field, f"{section}.{key}").replace("|", "\\|")
            rows.append(f"| `{key}` | {default} | {text} |")
            item = _list_item_model(field.annotation)
            if item is not None and item not in listed:
                listed.add(item)
                walk(item, key + "[].")

    walk(model, "")
    return "\n".join(rows) + "\n"


def _description(field: FieldInfo, where: str) -> str:
    if not field.description:
        raise ValueError(f"{where} has no description: give its Field a description (connectors/settings.py)")
    return field.description


def _comment(text: str, pad: str, out: list[str], first: str = "", rest: str = "") -> None:
    """``text`` as comment lines at ``pad``, wrapped at ``WIDTH``; ``first`` / ``rest`` indent it inside the comment."""
    prefix = f"{pad}# "
    out.extend(textwrap.wrap(text, WIDTH, initial_indent=prefix + first, subsequent_indent=prefix + (rest or first),
                             break_on_hyphens=False))


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def _dumped_default(field: FieldInfo) -> Any:
    return TypeAdapter(Any if field.annotation is None else field.annotation).dump_python(_default(field), mode="json")


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class of ``Model`` or ``Model | None``, else None."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """The item model class of ``list[Model]``, else None."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return _model_of(item)
    return None


if __name__ == "__main__":
    sys.stdout.write(sample_yaml())
