"""JSON numbers that remember how they were written, and a writer that writes them so.

Rewriting a config must change nothing but what ocishim adds (semantics.md rule 11).
Python's float turns `1e999` into inf (which json.dumps then writes as the invalid
`Infinity`), `1E5` into `100000.0` and `1.50` into `1.5`; another reader of the
rewritten file could then see another value. So parse.decode reads every float as a
JsonFloat, and the integer `-0` as a JsonInt, each keeping its source text, and
`dumps` writes that text back. Every other integer is a plain int, whose text
round-trips as it is (JSON integers have no leading zeros or plus sign).

Every container start reads and writes JSON, and importing the json package (with
the re and enum it imports) costs such a start more than the reading: `loads` and
`dumps` use json's C scanner and string encoder (_json) directly, and hand anything
unusual to the json package itself.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

try:
    from _json import encode_basestring as _c_string
    from _json import encode_basestring_ascii as _c_string_ascii
    from _json import make_encoder as _c_make_encoder
    from _json import make_scanner as _c_scanner
except ImportError:  # a Python without the accelerator: the json package's own functions
    from json.encoder import py_encode_basestring as _c_string
    from json.encoder import py_encode_basestring_ascii as _c_string_ascii
    from json.scanner import py_make_scanner as _c_scanner

    _c_make_encoder = None

__all__ = ["JsonFloat", "JsonInt", "dumps", "loads", "parse_float", "parse_int"]

_INDENT = "  "
_WHITESPACE = " \t\n\r"  # json's: what may stand around a document
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


# How many JsonFloat and JsonInt this process has made: while none, no document holds
# a number whose text a plain encoder would lose, and `hash_text` can use json's C one.
_made = [0]


class JsonFloat(float):
    """A float read from JSON text; `text` is that text, written back unchanged."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> "JsonFloat":
        self = super().__new__(cls, text)
        self.text = text
        _made[0] += 1
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
        _made[0] += 1
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


class _Decoder:
    """What json's scanner reads from a json.JSONDecoder: its options."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int",
                 "parse_constant", "memo")


def loads(text: str | bytes, *, object_pairs_hook: Callable[..., Any] | None = None,
          parse_float: Callable[[str], Any] | None = None,
          parse_int: Callable[[str], Any] | None = None,
          parse_constant: Callable[[str], Any] | None = None) -> Any:
    """json.loads(text, ...) without importing the json package.

    json.loads scans with the same C scanner, set up the same way; only a text that it
    would refuse (or one with a BOM or trailing data) goes to json.loads, which then
    raises its own error. Bytes are UTF-8 as json.loads reads them; those that json
    would take for another encoding (a BOM, NULs in the first four bytes) go to it.
    """
    if isinstance(text, bytes):
        if text[:1] in (b"\xef", b"\xfe", b"\xff") or b"\x00" in text[:4]:
            return _json_loads(text, object_pairs_hook, parse_float, parse_int, parse_constant)
        text = text.decode("utf-8", "surrogatepass")  # json.loads' decoding of UTF-8
    decoder = _Decoder()
    decoder.strict = True
    decoder.object_hook = None
    decoder.object_pairs_hook = object_pairs_hook
    decoder.parse_float = parse_float or float
    decoder.parse_int = parse_int or int
    decoder.parse_constant = parse_constant or _CONSTANTS.__getitem__
    decoder.memo = {}
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _c_scanner(decoder)(text, start)
    # A refusal: StopIteration where no value starts, else the scanner's own error, which
    # it can only raise once json.decoder is imported (before that, a SystemError).
    except (StopIteration, ValueError, RecursionError, SystemError):
        pass
    else:
        if end == len(text) or not text[end:].strip(_WHITESPACE):
            return value
    return _json_loads(text, object_pairs_hook, parse_float, parse_int, parse_constant)


def _json_loads(text: str | bytes, *hooks: Callable[..., Any] | None) -> Any:
    import json

    pairs, floats, ints, constants = hooks
    return json.loads(text, object_pairs_hook=pairs, parse_float=floats, parse_int=ints,
                      parse_constant=constants)


def ascii_string(s: str) -> str:
    """json.dumps(s): the JSON string, every non-ASCII character escaped."""
    return _c_string_ascii(s)


def _string(s: str) -> str:
    # UTF-8 as it is; a lone surrogate (which cannot be encoded) is escaped instead.
    # The same text as json.dumps(s, ensure_ascii=...) (json calls these encoders).
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return _c_string_ascii(s)
    return _c_string(s)


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


def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} has no JSON form")


def plain_dumps(obj: Any) -> str:
    """json.dumps(obj, sort_keys=True) for str, int, bool, None, lists and dicts of them,
    by json's C encoder (without importing the json package)."""
    if _c_make_encoder is None:
        import json

        return json.dumps(obj, sort_keys=True)
    encode = _c_make_encoder({}, _no_default, _c_string_ascii, None, ": ", ", ", True, False, False)
    return "".join(encode(obj, 0))


def hash_text(obj: Any) -> str:
    """A text of obj for hashing: two objects get the same text only if dumps writes
    them the same. Compact, by json's C encoder where no number can lose its text (no
    JsonFloat or JsonInt made yet), else dumps' own; each form marked by its first
    character, so that the two never meet."""
    if _made[0] == 0 and _c_make_encoder is not None:
        encode = _c_make_encoder({}, _no_default, _c_string_ascii, None, ":", ",", False, False,
                                 False)
        return "c" + "".join(encode(obj, 0))
    return "t" + dumps(obj)


def dumps(obj: Any, prerendered: dict[int, str] | None = None) -> str:
    """JSON text of obj: indent 2, keys in their order, a newline at the end.

    The same text as `json.dumps(obj, indent=2, ensure_ascii=False) + "\\n"`, except
    that numbers read by parse.decode keep their source text. Iterative, so that any
    document decode accepted, however deep, can be written.

    prerendered maps id(container) to dumps(container), written for it as it is (at its
    depth) instead of writing the container again: a compiled-filter cache hit keeps
    the rewritten linux.seccomp's text.
    """
    out: list[str] = []
    # One frame per open container: [iterator over its items, is an object, wrote an item].
    stack: list[list[Any]] = []
    value = obj
    while True:
        if prerendered and id(value) in prerendered:
            out.append(prerendered[id(value)].rstrip("\n").replace("\n", "\n" + _INDENT * len(stack)))
        elif isinstance(value, dict) and value:
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
