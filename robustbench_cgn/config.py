"""Resolve component configs: dataclass defaults <- config file <- ``--set key=value``.

Values are checked against the field types of each component's ``Config`` dataclass, so a
typo or a wrong type is a one-line :class:`~robustbench_cgn.errors.ConfigError`, not a crash
deep inside a training loop.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

SECTIONS = ("generator", "classifier", "benchmark")
TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null"}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config: an optional ``[run]`` table plus one table per component kind."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    for section in data:
        if section not in (*SECTIONS, "run"):
            raise ConfigError(
                f"config file {path}: unknown section [{section}]"
                + did_you_mean(section, ("run", *SECTIONS))
                + f"; allowed: run, {', '.join(SECTIONS)}"
            )
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [{section}] must be a table")
    return data


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric option accepts: ``min``/``max`` inclusive, ``above``/``below``
    exclusive (any may be ``None``)."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range (``"must be >= 1"``), or ``None``."""
        checks = (
            (self.min, value >= (self.min or 0), ">="),
            (self.max, value <= (self.max or 0), "<="),
            (self.above, value > (self.above or 0), ">"),
            (self.below, value < (self.below or 0), "<"),
        )
        failed = [f"{sign} {bound:g}" for bound, ok, sign in checks if bound is not None and not ok]
        return f"must be {' and '.join(failed)}" if failed else None


def bounded(
    default: float,
    *,
    min: float | None = None,  # noqa: A002 - the names users read in messages
    max: float | None = None,  # noqa: A002
    above: float | None = None,
    below: float | None = None,
    identity: bool = True,
) -> Any:
    """A numeric ``Config`` field with its declared :class:`Range`, checked by
    :func:`build_config` before anything runs: ``epochs: int = bounded(10, min=1, max=10_000)``.
    ``identity=False``: bookkeeping (e.g. how often to checkpoint), left out of run identity.
    """
    metadata = {"range": Range(min, max, above, below), "identity": identity}
    return dataclasses.field(default=default, metadata=metadata)


def identity_options(config: Any) -> dict[str, Any]:
    """The fields of a config dataclass that define what is computed (``identity=False``
    bookkeeping fields left out), JSON-friendly."""
    plain = config_as_dict(config)
    return {
        f.name: plain[f.name]
        for f in dataclasses.fields(config)
        if f.metadata.get("identity", True)
    }


def options_for(target: type, options: Any, **values: Any) -> Any:
    """``target(...)`` (a dataclass) from the fields of ``options`` it shares by name, then
    ``values``: how a component's user-facing options become a trainer's config without a
    hand-written copy of every field."""
    names = {f.name for f in dataclasses.fields(target)}
    shared = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    return target(**{**{k: v for k, v in shared.items() if k in names}, **values})


def field_range(field: dataclasses.Field) -> Range | None:
    """The declared range of a ``Config`` field, or ``None``."""
    return field.metadata.get("range")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, else an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_set_options(
    pairs: Iterable[str], sections: tuple[str, ...] = SECTIONS, bare: str | None = None
) -> dict[str, dict[str, str]]:
    """Split ``section.key=value`` strings into ``{section: {key: raw value}}``; with
    ``bare``, a ``key=value`` without a section belongs to that section."""
    result: dict[str, dict[str, str]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        dotted, value = pair.split("=", 1)
        section, _, key = dotted.strip().partition(".")
        if not key and bare is not None:
            section, key = bare, section
        if not key or section not in sections:
            raise ConfigError(
                f"--set {pair!r}: the key must start with one of {', '.join(sections)} "
                f"(e.g. {sections[0]}.{'epochs' if sections == SECTIONS else 'iterations'}=2)"
            )
        result.setdefault(section, {})[key.strip()] = value.strip()
    return result


def build_config(config_cls: type, overrides: Mapping[str, Any], *, owner: str) -> Any:
    """Instantiate ``config_cls`` with type-checked overrides (raw strings are parsed)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(fields) or "(none)"
            raise ConfigError(f"{owner} has no option {key!r}{hint} (options: {known})")
        try:
            values[key] = coerce(raw, hints[key])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{owner} option {key!r}: {exc}") from None
        declared = field_range(fields[key])
        problem = declared.problem(values[key]) if declared and values[key] is not None else None
        if problem:
            raise ConfigError(f"{owner} option {key!r} = {values[key]!r} {problem}")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:  # __post_init__ validation of the dataclass
        raise ConfigError(f"{owner}: {exc}") from None


def coerce(value: Any, annotation: Any) -> Any:
    """Convert ``value`` (a raw string from the CLI, or a TOML value) to ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and isinstance(value, str) and value.lower() in _NONE:
            return None
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (tuple, list):
        items = _split_sequence(value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} values, got {len(items)}")
            converted = [coerce(item, arg) for item, arg in zip(items, args, strict=True)]
        else:
            item_type = args[0] if args else Any
            converted = [coerce(item, item_type) for item in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        return _to_bool(value)
    if annotation is int:
        return _to_int(value)
    if annotation is float:
        return _to_float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"unsupported option type {annotation!r}")


def _split_sequence(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [part.strip() for part in text.split(",") if part.strip()]
    raise ValueError(f"expected a list, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE_WORDS | _FALSE:
        return value.lower() in TRUE_WORDS
    raise ValueError(f"expected true/false, got {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            pass
        try:  # scientific notation such as 1e5
            number = float(text)
        except ValueError:
            number = None
        if number is not None and number.is_integer() and abs(number) < 2**63:
            return int(number)
    raise ValueError(f"expected an integer, got {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip().replace("_", ""))
        except ValueError:
            pass
        else:
            if number == number and number not in (float("inf"), float("-inf")):
                return number
    raise ValueError(f"expected a finite number, got {value!r}")


def config_as_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly view of a config dataclass (paths and tuples made plain)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
