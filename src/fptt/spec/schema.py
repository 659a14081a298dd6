"""Declared settings: each configuration field states its type, help, choices and check once.

A section is a frozen dataclass whose fields are made with :func:`setting`; constructing it
validates and normalises every value (:meth:`Section.__post_init__`), so a section object is valid
by construction and never changes. The command line builds its flags and help from the same
declarations (:mod:`fptt.cli.train`), the configuration files and ``config.json`` use the field
names, and the builders pass the fields to the library under those names (no torch import here).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

__all__ = ["ConfigError", "Setting", "setting", "Section", "is_number", "positive", "non_negative", "at_least_one"]

#: the kinds of value a setting holds (``ints``: a tuple of ints, one or more)
KINDS = ("bool", "int", "float", "str", "ints", "floats", "strs")


class ConfigError(ValueError):
    """A configuration a user can fix: unknown key, bad value, unreadable file."""


def is_number(value: Any) -> bool:
    """An int or a float, but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(value: float) -> None:
    """A finite number > 0."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive finite number")


def non_negative(value: float) -> None:
    """A finite number >= 0."""
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError("must be a finite number >= 0")


def at_least_one(values: tuple) -> None:
    """A sequence of positive numbers, at least one."""
    if not values or any(not value > 0 for value in values):
        raise ValueError("must be one or more positive values")


@dataclass(frozen=True)
class Setting:
    """What one field declares: its kind, help, choices, check and flag spelling.

    ``words`` are strings a numeric setting also takes (``chrono_tau="seq_len"``, ``fused="auto"``);
    ``check`` raises ``ValueError`` on a bad value (the message is prefixed with the field's name);
    ``nargs`` and ``metavar`` shape the command-line flag."""

    kind: str
    help: str
    choices: tuple = ()
    check: Optional[Callable[[Any], Any]] = None
    optional: bool = False
    words: tuple[str, ...] = ()
    nargs: Optional[int | str] = None
    metavar: Optional[str | tuple[str, ...]] = None

    def normalise(self, name: str, value: Any) -> Any:
        """``value`` checked and in its canonical form (tuples for sequences, floats for numbers);
        :class:`ConfigError` naming ``name`` otherwise."""
        if value is None and self.optional:
            return None
        if isinstance(value, str) and value in self.words:
            return value
        try:
            value = _CONVERT[self.kind](value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as error:  # a library rule names the value itself
                message = str(error) if str(error).startswith(name) else f"{name} {error}, got {_plain(value)!r}"
                raise ConfigError(message) from None
        return value

    def describe(self) -> str:
        kind = {"bool": "true or false", "int": "an int", "float": "a number", "str": "a string",
                "ints": "one or more ints", "floats": "numbers", "strs": "one or more strings"}[self.kind]
        extra = [*(repr(word) for word in self.words), *(["unset (null)"] if self.optional else [])]
        return kind + (f" or {', '.join(extra)}" if extra else "")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError
    return value


def _float(value: Any) -> float:
    if not is_number(value):
        raise TypeError
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _sequence(item: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    def convert(value: Any) -> tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(item(entry) for entry in value)
    return convert


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "bool": _bool, "int": _int, "float": _float, "str": _str,
    "ints": _sequence(_int), "floats": _sequence(_float), "strs": _sequence(_str),
}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def setting(default: Any, help: str, *, kind: Optional[str] = None, choices: tuple = (),
            check: Optional[Callable[[Any], Any]] = None, optional: Optional[bool] = None,
            words: tuple[str, ...] = (), nargs: Optional[int | str] = None,
            metavar: Optional[str | tuple[str, ...]] = None) -> Any:
    """A dataclass field with its :class:`Setting` (``kind`` from the default when not given;
    ``optional``: ``None`` is allowed, by default when the default is ``None``)."""
    if kind is None:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}[type(default)]
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    declared = Setting(kind=kind, help=help, choices=tuple(choices), check=check,
                       optional=default is None if optional is None else optional, words=tuple(words),
                       nargs=nargs, metavar=metavar)
    return field(default=default, metadata={"setting": declared})


@dataclass(frozen=True)
class Section:
    """A frozen group of settings, validated when made."""

    #: the section's name in configuration files (``[network]``)
    name: ClassVar[str] = ""
    #: one line for ``--help``'s argument group and the docs
    title: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = item.metadata["setting"].normalise(item.name, getattr(self, item.name))
            object.__setattr__(self, item.name, value)

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Field name -> its declaration, in declaration order."""
        return {item.name: item.metadata["setting"] for item in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for sequences), for JSON."""
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}
