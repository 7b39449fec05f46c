"""Commented sample configurations generated from pydantic settings models: one way to document an option.

Why generated: a hand-written sample drifts (options added without a word, defaults changed in the code only). Here
an option is documented once, in its ``Field(description=...)``, and the samples (``connectors/opcua/sample.yaml``,
``config/ingest.example.yaml``, ``deploy/lines/sample.yaml``) and the OPC UA README's option table are written
from the models; tests check that the committed files are current. An option without a description is refused
(``UndocumentedOption``): documenting it is part of adding it.

How a field is written (Telegraf's ``sample.conf`` habit: the sample is the reference):

- its description as a comment, then ``key: default``; a nested model with a default is written as a section;
- a required field is written with an example (``Field(examples=[...])``, or the one value of a ``Literal``), so that
  the sample still loads;
- the items of ``list[Model]``, the values of ``dict[str, Model]`` and a ``Model | None`` left unset are described
  field by field in comments (``name (default ...): description``), each model once: where it comes back, the
  comment points to where it was described.

This module lives in ``connectors`` (not ``twin``) because connectors must not import the twin, and both use it.
"""

from __future__ import annotations

import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

WIDTH = 120


class UndocumentedOption(ValueError):
    """An option has no ``Field(description=...)``; the message names it."""


def commented_yaml(model: type[BaseModel], header: str, section: str | None = None,
                   relative_to: Path | None = None) -> str:
    """``model``'s options as commented YAML: ``header`` (comment lines) first, then the fields, under ``section:``
    when given (else at the top level, one blank line between top-level keys). Absolute ``Path`` defaults below
    ``relative_to`` are written relative to it (the repository root: samples must not name this checkout)."""
    w = _Writer(relative_to=relative_to)
    w.out.extend(header.rstrip("\n").splitlines())
    if section is None:
        w.out.append("")
        w.fields(model, "", 0)
    else:
        w.out.append(f"{section}:")
        w.fields(model, section, 2)
    return "\n".join(w.out) + "\n"


def options_table(model: type[BaseModel], section: str) -> str:
    """``model``'s options as a Markdown table (option, default, description); the fields of list items once."""
    rows = ["| option | default | what it does |", "| --- | --- | --- |"]
    listed: set[type[BaseModel]] = set()  # an item model is listed once (groups[].nodes are opcua.nodes' fields)

    def walk(m: type[BaseModel], path: str) -> None:
        for name, f in m.model_fields.items():
            key = f"{path}{_key(name, f)}"
            if _section_model(f) is not None:
                walk(_section_model(f), key + ".")  # type: ignore[arg-type]
                continue
            default = "required" if f.is_required() else f"`{_flow(_dumped_default(f, None))}`"
            text = description(f, f"{section}.{key}").replace("|", "\\|")
            rows.append(f"| `{key}` | {default} | {text} |")
            sub = _collection_model(f.annotation)
            if sub is not None and sub[1] == "item" and sub[0] not in listed:
                listed.add(sub[0])
                walk(sub[0], key + "[].")

    walk(model, "")
    return "\n".join(rows) + "\n"


def description(f: FieldInfo, where: str) -> str:
    """The field's description; ``UndocumentedOption`` naming ``where`` when it has none."""
    if not f.description:
        raise UndocumentedOption(f"{where} has no description: give its Field a description (the samples and "
                                 "option tables are generated from it)")
    return f.description


# ------------------------------------------------------------------------------------------------------------------
@dataclass
class _Writer:
    relative_to: Path | None
    out: list[str] = field(default_factory=list)
    #: model -> the path where its fields were described, so that a model that comes back is pointed to, not repeated
    described: dict[type[BaseModel], str] = field(default_factory=dict)

    def fields(self, model: type[BaseModel], path: str, indent: int) -> None:
        """``model``'s fields as YAML values at ``indent`` (a section)."""
        self.described.setdefault(model, path)
        pad = " " * indent
        for i, (name, f) in enumerate(model.model_fields.items()):
            key = _key(name, f)
            where = f"{path}.{key}" if path else key
            if indent == 0 and i:
                self.out.append("")
            text = description(f, where)
            nested = _section_model(f)
            if nested is not None:
                self.comment(text, pad)
                self.out.append(f"{pad}{key}:")
                self.fields(nested, where, indent + 2)
                continue
            if f.is_required():
                text += " (required)" if _only_value(f) else " (required; the value here is an example)"
            self.comment(text + self.seen_note(f), pad)
            value = _example(f, where) if f.is_required() else _dumped_default(f, self.relative_to)
            self.out.extend(_value_lines(key, value, pad))
            self.describe_collection(f, key, where, pad, 0)

    def seen_note(self, f: FieldInfo) -> str:
        """`` (each item: as opcua.nodes[] above)`` when ``f``'s item / value / optional model is described already."""
        sub = _collection_model(f.annotation)
        if sub is None or sub[0] not in self.described:
            return ""
        what = {"item": "each item", "value": "each value", "optional": "its fields"}[sub[1]]
        return f" ({what}: as {self.described[sub[0]]} above)"

    def describe_collection(self, f: FieldInfo, key: str, where: str, pad: str, depth: int) -> None:
        """The fields of ``f``'s item / value / optional model not described yet: a heading ``depth`` levels in,
        then the fields one level further."""
        sub = _collection_model(f.annotation)
        if sub is None or sub[0] in self.described:
            return
        model, kind = sub
        suffix = {"item": "[]", "value": ".<key>", "optional": ""}[kind]
        title = {"item": f"Each item of {key}", "value": f"Each value of {key}",
                 "optional": f"The fields of {key} (when set)"}[kind]
        self.comment(f"{title}:", pad, depth)
        self.describe(model, where + suffix, pad, depth + 1)

    def describe(self, model: type[BaseModel], path: str, pad: str, depth: int) -> None:
        """``model``'s fields as comment lines ``name (default ...): description``, ``depth`` levels in."""
        self.described[model] = path
        for name, f in model.model_fields.items():
            key = _key(name, f)
            where = f"{path}.{key}"
            text = description(f, where)
            nested = _section_model(f)
            if nested is not None:
                seen = self.described.get(nested)
                self.comment(f"{key}: {text}" + (f"; as {seen} (above)" if seen is not None else ""), pad, depth)
                if seen is None:
                    self.describe(nested, where, pad, depth + 1)
                continue
            if f.is_required():
                state = "required" + (f", e.g. {_flow(f.examples[0])}" if f.examples else "")
            else:
                state = f"default {_flow(_dumped_default(f, self.relative_to))}"
            self.comment(f"{key} ({state}): {text}{self.seen_note(f)}", pad, depth)
            self.describe_collection(f, key, where, pad, depth + 1)

    def comment(self, text: str, pad: str, depth: int = 0) -> None:
        """``text`` as comment lines at ``pad``, ``depth`` levels in (two spaces each), wrapped at ``WIDTH``."""
        first = f"{pad}# " + "  " * depth
        rest = first + ("  " if depth else "")
        self.out.extend(textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest,
                                      break_on_hyphens=False, break_long_words=False))


def _key(name: str, f: FieldInfo) -> str:
    return f.alias or name


def _default(f: FieldInfo) -> Any:
    return f.get_default(call_default_factory=True)


def _dumped_default(f: FieldInfo, relative_to: Path | None) -> Any:
    value = _default(f)
    if isinstance(value, Path) and relative_to is not None and value.is_absolute() and \
            value.is_relative_to(relative_to):
        value = value.relative_to(relative_to)
    return TypeAdapter(Any if f.annotation is None else f.annotation).dump_python(value, mode="json")


def _example(f: FieldInfo, where: str) -> Any:
    """The value a required field is written with: its first example, or the one value its ``Literal`` allows."""
    if f.examples:
        return f.examples[0]
    if _only_value(f):
        return typing.get_args(f.annotation)[0]
    raise UndocumentedOption(f"{where} is required and has no example: give its Field examples=[...] (the sample "
                             "must load)")


def _only_value(f: FieldInfo) -> bool:
    """The field is a ``Literal`` of one value (a schema tag): that value is no example, it is the value."""
    return typing.get_origin(f.annotation) is typing.Literal and len(typing.get_args(f.annotation)) == 1


def _flow(value: Any) -> str:
    """``value`` as one line of YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _value_lines(key: str, value: Any, pad: str) -> list[str]:
    """``key: value`` on one line when it fits, else as a block (nested collections) or wrapped flow (scalars)."""
    line = f"{pad}{key}: {_flow(value)}"
    if len(line) <= WIDTH or not isinstance(value, (dict, list)) or not value:
        return [line]
    # PyYAML's width is where it starts looking for a break, not a hard limit: leave room for one more item
    text = yaml.safe_dump({key: value}, default_flow_style=None, width=WIDTH - len(pad) - 16, sort_keys=False,
                          allow_unicode=True)
    return [pad + ln for ln in text.splitlines()]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _section_model(f: FieldInfo) -> type[BaseModel] | None:
    """The model of a field written as a section: ``Model`` (or ``Model | None``) with a model default."""
    models = _models_in(f.annotation)
    if models and not f.is_required() and isinstance(_default(f), BaseModel):
        return models[0]
    return None


def _collection_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """``(Model, kind)`` for ``list[Model]`` (item), ``dict[str, Model]`` (value), ``Model | None`` (optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args and _models_in(args[0]):
        return _models_in(args[0])[0], "item"
    if origin is dict and len(args) == 2 and _models_in(args[1]):
        return _models_in(args[1])[0], "value"
    if isinstance(annotation, types.UnionType) and _models_in(annotation):
        return _models_in(annotation)[0], "optional"
    return None
