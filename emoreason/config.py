"""YAML configs with ``key=value`` overrides (the TRL/open-r1 parser style) into dataclasses."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["lr=1e-4", "teacher.model=qwen"]`` → nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.strip().lstrip("-").replace("-", "_").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                **defaults: Any) -> T:
    """Build ``cls`` from a YAML file, then ``key=value`` overrides; unknown keys are an error naming them."""
    data: dict[str, Any] = dict(defaults)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = _merge(data, loaded)
    data = _merge(data, parse_overrides(overrides))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config keys for {cls.__name__}: {', '.join(unknown)}"
                          + (f" (in {path})" if path else ""))
    hints = typing.get_type_hints(cls)
    for name, value in list(data.items()):
        data[name] = _coerce(name, value, hints.get(name))
    return cls(**data)  # type: ignore[call-arg]


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Numbers YAML read as strings ("5e-5" is a string in YAML 1.1) or ints where floats are meant."""
    allowed = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    if float in allowed and isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from exc
    if int in allowed and isinstance(value, str) and str not in allowed:
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from exc
    return value


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
