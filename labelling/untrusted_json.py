"""Untrusted JSON: decoding it strictly, and quoting its values in error messages.

`strict_loads` is `json.loads` for text a user uploaded: a member repeated in one object
(which `json.loads` resolves silently, keeping the last), the non-standard constants NaN,
Infinity and -Infinity, nesting past Python's recursion limit and integers past its
4300-digit limit are all refused with one `JSONInputError` whose message names the fault,
rather than a silent choice, a float that is not a number, a RecursionError or a bare
ValueError. It does not bound the size of the text: the caller knows its own limit and
checks it first.

`quoted` writes any value into a message safely (JSON-escaped, so no control characters
reach a log or a page, and truncated); `json_type` names a decoded value's JSON type.

Framework-free (stdlib only): the taxonomy format (`taxonomy_schema`) decodes and reports
through it, and it is checked without Django.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class JSONInputError(ValueError):
    """Text that is not strict JSON; the message says why, without a "document:" prefix."""


def strict_loads(text: str) -> object:
    """The decoded value of `text`; raises JSONInputError for anything but strict JSON."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
        )
    except JSONInputError:
        raise  # from the hooks below: a repeated member, NaN or Infinity
    except json.JSONDecodeError as exc:
        raise JSONInputError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise JSONInputError("JSON nested too deeply") from None
    except ValueError:
        # json.loads refuses an integer longer than sys.get_int_max_str_digits() (4300) with
        # a plain ValueError, not a JSONDecodeError.
        raise JSONInputError("a number in it has too many digits") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal members silently; a repeated "name" is a
    # mistake the author should see.
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise JSONInputError(f"member {quoted(name)} appears twice in one JSON object")
        obj[name] = value
    return obj


def _refuse_constant(name: str) -> float:
    raise JSONInputError(f"{name} is not a valid JSON number")


def quoted(value: object, limit: int = 40) -> str:
    """A value quoted for a problem message: JSON-escaped (no control characters), truncated."""
    try:
        shown = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        try:
            shown = json.dumps(repr(value), ensure_ascii=True)
        except (ValueError, RecursionError):
            # An int past sys.get_int_max_str_digits() has no str or repr at all (and a
            # structure nested past the recursion limit none either): name its type.
            shown = f"<{json_type(value)} too large to show>"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type ("object", "array", ...); the Python type's
    name for what JSON cannot hold."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__
