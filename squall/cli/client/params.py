"""Parameters and annotations: ``-p KEY VALUE`` (``-a``) and ``-P FILE`` (``-A``).

As with ``wsk``, a value is JSON when it parses as JSON (``-p n 3`` is a number,
``-p o '{"a":1}'`` an object) and the string itself otherwise; a file holds one JSON
object. File values come first and ``-p`` pairs override them. OpenWhisk stores both
as ``[{"key": ..., "value": ...}]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from squall.cli.client.errors import ClientError

Pairs = tuple[tuple[str, str], ...]


def parse_value(raw: str) -> Any:
    """``raw`` as JSON when it parses, else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    return {key: parse_value(raw) for key, raw in pairs}


def read_file(path: Path, what: str = "parameter") -> dict[str, Any]:
    """The JSON object in ``path``; a ClientError naming the file otherwise."""
    try:
        value = json.loads(path.read_text())
    except OSError as error:
        raise ClientError(f"Invalid {what} file '{path}': {error.strerror}") from None
    except ValueError as error:
        raise ClientError(f"Invalid {what} file '{path}': not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ClientError(f"Invalid {what} file '{path}': expected a JSON object")
    return value


def collect(pairs: Pairs, file: Path | None, what: str = "parameter") -> dict[str, Any]:
    """The file's values overridden by the pairs'."""
    values = read_file(file, what) if file is not None else {}
    values.update(parse_pairs(pairs))
    return values


def key_values(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenWhisk's ``[{"key", "value"}]`` form."""
    return [{"key": key, "value": value} for key, value in values.items()]


def as_dict(key_value_list: Any) -> dict[str, Any]:
    """The ``[{"key", "value"}]`` list of an entity as a dict (for display)."""
    if not isinstance(key_value_list, list):
        return {}
    return {
        str(kv["key"]): kv.get("value")
        for kv in key_value_list
        if isinstance(kv, dict) and "key" in kv
    }


def _pair_options(long: str, noun: str) -> Callable[[Any], Any]:
    """Options ``-x/--LONG KEY VALUE`` (repeatable) and ``-X/--LONG-file FILE``, ``x``
    being the first letter of ``long``; the command receives ``LONG`` and ``LONG_file``."""
    short = long[0]

    def options(f: Any) -> Any:
        f = click.option(
            f"-{short.upper()}",
            f"--{long}-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=f"FILE containing {noun} values in JSON format.",
        )(f)
        return click.option(
            f"-{short}",
            f"--{long}",
            long,
            type=(str, str),
            multiple=True,
            metavar="KEY VALUE",
            help=f"{noun.capitalize()} values in KEY VALUE format (VALUE is JSON if it parses).",
        )(f)

    return options


#: ``-p/--param KEY VALUE`` (repeatable) and ``-P/--param-file FILE``.
param_options = _pair_options("param", "parameter")
#: ``-a/--annotation KEY VALUE`` (repeatable) and ``-A/--annotation-file FILE``.
annotation_options = _pair_options("annotation", "annotation")
