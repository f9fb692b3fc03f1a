"""YAML configs with ``key=value`` overrides (the TRL/open-r1 parser style) into dataclasses.

``load_config`` fills one emoreason dataclass; ``parse_dataclasses`` fills several at once through TRL's own
``TrlParser`` (``HfArgumentParser``), so training recipes get TRL's configs with TRL's parsing of every option.
An unknown key is an error that names the closest valid key.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def unknown_keys_message(unknown: Iterable[str], known: Iterable[str], where: str) -> str:
    """"unknown config key 'lerning_rate' (did you mean 'learning_rate'?)" for each unknown key."""
    known = sorted(known)
    parts = []
    for key in sorted(unknown):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown config keys for {where}: {', '.join(parts)}"


def parse_overrides(items: list[str] | None, raw_scalars: bool = False) -> dict[str, Any]:
    """``["lr=1e-4", "teacher.model=qwen"]`` → nested dict; values parsed as YAML scalars/lists (with
    ``raw_scalars``, scalars stay strings for the receiving parser to convert by the field's type)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        if raw_scalars and "." not in key and not isinstance(value, list | dict) and value is not None:
            value = raw  # a top-level field: converted by the field's own type
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


def _read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return loaded


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                **defaults: Any) -> T:
    """Build ``cls`` from a YAML file, then ``key=value`` overrides; unknown keys are an error naming them."""
    data: dict[str, Any] = dict(defaults)
    if path is not None:
        data = _merge(data, _read_yaml(path))
    data = _merge(data, parse_overrides(overrides))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, fields, cls.__name__) + (f" (in {path})" if path else ""))
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


def parse_dataclasses(dataclass_types: Sequence[type], path: str | Path | None = None,
                      overrides: list[str] | None = None, defaults: dict[str, Any] | None = None,
                      check: Callable[[dict[str, Any], str], None] | None = None) -> tuple:
    """Fill several dataclasses (e.g. script args, ``SFTConfig``, ``ModelConfig``) from ``defaults``, a YAML
    file and ``key=value`` overrides, in that order, with TRL's ``TrlParser``: each value is converted and
    checked as TRL's own CLI would (``--key value``), and an ``env:`` mapping sets environment variables.
    Override scalars are converted by the field's type (``beta=0`` is a float, ``use_vllm=true`` a bool);
    lists and mappings are YAML (``reward_funcs=[format,emotion]``, ``reward_options.au_f1.intensity_aware=true``).
    ``check(values, where)`` sees the merged values (environment set) before the dataclasses are built.
    """
    from trl import TrlParser

    where = str(path) if path is not None else " / ".join(t.__name__ for t in dataclass_types)
    data: dict[str, Any] = dict(defaults or {})
    if path is not None:
        data = _merge(data, _read_yaml(path))
    data = _merge(data, parse_overrides(overrides, raw_scalars=True))
    env = data.pop("env", None) or {}
    if not isinstance(env, dict):
        raise ConfigError(f"{where}: env must be a mapping of environment variables")
    parser = TrlParser(list(dataclass_types), exit_on_error=False)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    unknown = set(data) - set(actions)
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, actions, where))
    for key, value in list(data.items()):
        if actions[key].nargs in ("+", "*") and value is not None and not isinstance(value, list | dict):
            # `tasks=cot` is `--tasks cot` on TRL's CLI: a one-item list, its item converted by the field's type
            convert = actions[key].type if callable(actions[key].type) else (lambda v: v)
            try:
                data[key] = value = [convert(value)]
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {key}={value!r}: {exc}") from exc
        choices = actions[key].choices
        for item in (value if isinstance(value, list) else [value]) if choices is not None else []:
            if item is not None and item not in choices:
                close = difflib.get_close_matches(str(item), [str(c) for c in choices], n=1)
                raise ConfigError(f"{where}: {key}={item!r} is not one of {', '.join(map(str, choices))}"
                                  + (f" (did you mean {close[0]!r}?)" if close else ""))
    for key, value in env.items():
        os.environ[str(key)] = str(value)
    if check is not None:
        check(data, where)
    parser.set_defaults_with_config(**data)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=[], look_for_args_file=False))
    except argparse.ArgumentError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
