"""JSON numbers that remember how they were written, and a writer that writes them so.

Rewriting a config must change nothing but what ocishim adds (semantics.md rule 11).
Python's float turns `1e999` into inf (which json.dumps then writes as the invalid
`Infinity`), `1E5` into `100000.0` and `1.50` into `1.5`; another reader of the
rewritten file could then see another value. So parse.decode reads every float as a
JsonFloat, and the integer `-0` as a JsonInt, each keeping its source text, and
`dumps` writes that text back. Every other integer is a plain int, whose text
round-trips as it is (JSON integers have no leading zeros or plus sign).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["JsonFloat", "JsonInt", "dumps", "parse_float", "parse_int"]

_INDENT = "  "
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonFloat(float):
    """A float read from JSON text; `text` is that text, written back unchanged."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> "JsonFloat":
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __getnewargs__(self) -> tuple[str]:  # copy.deepcopy and pickle keep the text
        return (self.text,)

    def __repr__(self) -> str:  # messages show the value as the user wrote it
        return self.text


class JsonInt(int):
    """An integer whose text int() would not give back: only `-0`."""

    text: str  # int subclasses cannot have __slots__

    def __new__(cls, text: str) -> "JsonInt":
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __getnewargs__(self) -> tuple[str]:
        return (self.text,)

    def __repr__(self) -> str:
        return self.text


def parse_float(text: str) -> JsonFloat:
    """json.loads' parse_float hook."""
    return JsonFloat(text)


def parse_int(text: str) -> int:
    """json.loads' parse_int hook: a plain int, unless the text is `-0`."""
    if text == "-0":
        return JsonInt(text)
    return int(text)


def _string(s: str) -> str:
    # UTF-8 as it is; a lone surrogate (which cannot be encoded) is escaped instead.
    return json.dumps(s, ensure_ascii=bool(_SURROGATE.search(s)))


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (JsonFloat, JsonInt)):
        return value.text
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} has no JSON form")
        return float.__repr__(value)
    if isinstance(value, (dict, list, tuple)):  # only empty ones get here
        return "{}" if isinstance(value, dict) else "[]"
    raise TypeError(f"{type(value).__name__} has no JSON form")


def dumps(obj: Any) -> str:
    """JSON text of obj: indent 2, keys in their order, a newline at the end.

    The same text as `json.dumps(obj, indent=2, ensure_ascii=False) + "\\n"`, except
    that numbers read by parse.decode keep their source text. Iterative, so that any
    document decode accepted, however deep, can be written.
    """
    out: list[str] = []
    # One frame per open container: [iterator over its items, is an object, wrote an item].
    stack: list[list[Any]] = []
    value = obj
    while True:
        if isinstance(value, dict) and value:
            out.append("{")
            stack.append([iter(value.items()), True, False])
        elif isinstance(value, (list, tuple)) and value:
            out.append("[")
            stack.append([iter(value), False, False])
        else:
            out.append(_scalar(value))
        while stack:
            frame = stack[-1]
            item = next(frame[0], _END)
            if item is _END:
                stack.pop()
                out.append("\n" + _INDENT * len(stack) + ("}" if frame[1] else "]"))
                continue
            out.append(("," if frame[2] else "") + "\n" + _INDENT * len(stack))
            frame[2] = True
            if frame[1]:
                key, value = item
                if not isinstance(key, str):
                    raise TypeError(f"object key {key!r} is not a string")
                out.append(_string(key) + ": ")
            else:
                value = item
            break
        else:
            out.append("\n")
            return "".join(out)


_END = object()
