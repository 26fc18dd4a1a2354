"""JSON documents with one meaning for every reader: decode, check_fields, read_json.

Every config ocishim reads comes through here: the hook's stdin, the wrapper's
bundle, `ocishim run`, profiles. On a compiled-filter cache hit this is all of the
parsing a container start does, so the module imports no more than it needs: no
json package (jsontext scans with json's C scanner), no re, no dataclasses.
"""

from __future__ import annotations

import os
import stat

from ..errors import ProfileError
from . import jsontext, spec_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_PROFILE_BYTES = 16 * 1024 * 1024


def join(path: str, key: str) -> str:
    """The JSON path of `key` inside the object at `path` ("" is the top level)."""
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------- files

def _read(path: str) -> bytes:
    """The bytes of a file, refusing anything larger than MAX_PROFILE_BYTES unread."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ProfileError(path, "no such file or directory") from None
    except OSError as e:
        raise ProfileError(path, f"cannot open: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ProfileError(path, "is a directory")
        if stat.S_ISREG(st.st_mode) and st.st_size > MAX_PROFILE_BYTES:
            raise ProfileError(path, _too_large(st.st_size))
        # Pipes and the like have no size: read one byte past the limit to tell.
        chunks = []
        total = 0
        while total <= MAX_PROFILE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_PROFILE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_PROFILE_BYTES:
            raise ProfileError(path, _too_large(None))
        return b"".join(chunks)
    except OSError as e:
        raise ProfileError(path, f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read_json(path: str) -> Any:
    """A JSON file decoded by `decode`'s rules, read within MAX_PROFILE_BYTES.

    For every config.json ocishim reads (the runtime wrapper's bundle, for instance).
    """
    return decode(_read(path), path)


def _too_large(size: int | None) -> str:
    limit = f"the {MAX_PROFILE_BYTES // (1024 * 1024)} MiB limit"
    if size is None:
        return f"file is larger than {limit}"
    return f"file is {size} bytes, larger than {limit}"


# ---------------------------------------------------------------- one meaning per config
#
# A config that two readers could read differently is refused (semantics.md rule 11):
# Go (runc, containerd, moby) keeps the last of two equal keys and crun's yajl the
# first; Go reads "Action" as "action" where crun and ocishim ignore it; crun reads
# "action\u0000x" as "action" (C strings end at NUL; measured with crun 1.8.1) where
# Go and ocishim do not; NaN and Infinity are not JSON, and Go turns a lone UTF-16
# surrogate escape into U+FFFD.


class _Duplicated(dict):
    """An object whose text had `key` twice; only ever seen by _find_ambiguity."""

    key: str


class _Constant:
    """Where NaN, Infinity or -Infinity stood in the text."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_SURROGATE_LEAD = frozenset("dD")
_SURROGATE_SECOND = frozenset("89abcdefABCDEF")
_NOT_IN_PLAIN_KEY = frozenset('[]"\\')


def _may_hold_bad_char(text: str) -> bool:
    """Whether a string decoded from `text` may hold a NUL or a lone surrogate: only when
    the text has one itself or a \\u0000 or \\uD800-\\uDFFF escape. Only then are the
    strings searched."""
    if "\x00" in text:
        return True
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a surrogate in the text itself
            return True
    at = text.find("\\u")
    while at >= 0:
        code = text[at + 2:at + 6]
        if code == "0000" or (code[:1] in _SURROGATE_LEAD and code[1:2] in _SURROGATE_SECOND):
            return True
        at = text.find("\\u", at + 2)
    return False


def _bad_char(value: str) -> str | None:
    """The first NUL or lone surrogate in value, or None."""
    if value.isascii():
        return "\x00" if "\x00" in value else None
    for char in value:
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            return char
    return None


def key_path(path: str, key: str) -> str:
    """The JSON path of `key` inside the object at `path`, readable whatever the key holds.

    Bare where it is printable, without whitespace, brackets, quotes, backslashes, NUL
    or surrogates; else ["..."], escaped.
    """
    if key and key.isprintable() and _bad_char(key) is None \
            and not any(c.isspace() or c in _NOT_IN_PLAIN_KEY for c in key):
        return join(path, key)
    return f"{path}[{jsontext.ascii_string(key)}]"


def quote(key: str) -> str:
    """A key in a message: JSON-quoted, non-ASCII escaped, so look-alikes show."""
    return jsontext.ascii_string(key)


def _pairs_hook(problems: list[bool]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        bad = _Duplicated(obj)
        bad.key = key
        problems.append(True)
        return bad
    return hook


def _constant_hook(problems: list[bool]) -> Any:
    def hook(name: str) -> _Constant:
        problems.append(True)
        return _Constant(name)
    return hook


def _find_ambiguity(obj: Any, source: str) -> None:
    """Raise a ProfileError at the first ambiguous place in the decoded tree.

    Iterative, so that the deepest document json accepted can be searched.
    """
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Constant):
            raise ProfileError(path or source, f"{value.name} is not valid JSON")
        if isinstance(value, str):
            if (bad := _bad_char(value)) is not None:
                raise ProfileError(path or source, _bad_char_text(bad))
        elif isinstance(value, dict):
            if isinstance(value, _Duplicated):
                raise ProfileError(key_path(path, value.key),
                                   f"duplicate key {quote(value.key)} (Go takes the last value, "
                                   "crun the first)")
            for key in value:
                if (bad := _bad_char(key)) is not None:
                    raise ProfileError(key_path(path, key), _bad_char_text(bad))
            stack.extend((v, key_path(path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))


def _bad_char_text(char: str) -> str:
    if char == "\x00":
        return "a NUL character (\\u0000): crun reads the text only up to it, Go all of it"
    return "a lone UTF-16 surrogate escape: Go reads it as U+FFFD, Python keeps it"


def check_fields(obj: Any, schema: spec_fields.Schema, path: str = "") -> None:
    """Refuse keys that differ only in case from a spec field at their position.

    Go decoders take such a key for the field; crun and ocishim do not. Keys equal to
    a field, and keys of maps (annotations, sysctl, ...), are fine.
    """
    stack: list[tuple[Any, spec_fields.Schema, str]] = [(obj, schema, path)]
    while stack:
        value, schema, path = stack.pop()
        if isinstance(schema, spec_fields.Struct) and isinstance(value, dict):
            for key, item in value.items():
                field = schema.twin(key)
                if field is not None:
                    raise ProfileError(
                        key_path(path, key),
                        f"key {quote(key)} differs only in case from the field {quote(field)}: "
                        f"Go decoders (runc, containerd, Docker) read it as {quote(field)}, "
                        f"crun and ocishim do not; write {quote(field)}",
                    )
                if schema.fields.get(key) is not None:
                    stack.append((item, schema.fields[key], key_path(path, key)))
        elif isinstance(schema, spec_fields.ArrayOf) and isinstance(value, list):
            stack.extend((v, schema.item, f"{path}[{i}]") for i, v in enumerate(value))
        elif isinstance(schema, spec_fields.MapOf) and isinstance(value, dict) \
                and schema.value is not None:
            stack.extend((v, schema.value, key_path(path, k)) for k, v in value.items())


def decode(data: bytes | str, source: str) -> Any:
    """Parse JSON text that has one meaning for every reader.

    Errors name `source` and, where known, the line and column; duplicate keys, NaN,
    Infinity, NUL characters and lone surrogate escapes are refused at their JSON path.
    Floats come back as jsontext.JsonFloat, keeping their text for jsontext.dumps.
    """
    if len(data) > MAX_PROFILE_BYTES:  # for text, a lower bound of its UTF-8 size
        raise ProfileError(source, _too_large(len(data) if isinstance(data, bytes) else None))
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProfileError(source, f"not valid UTF-8 (byte offset {e.start})") from None
    else:
        text = data
    problems: list[bool] = []
    try:
        # jsontext.parse_int differs from int only for the text -0, so only a document
        # that has that text pays for a Python call per integer.
        obj = jsontext.loads(text, object_pairs_hook=_pairs_hook(problems),
                             parse_constant=_constant_hook(problems),
                             parse_float=jsontext.parse_float,
                             parse_int=jsontext.parse_int if "-0" in text else None)
    except RecursionError:
        raise ProfileError(source, "invalid JSON: nested too deeply") from None
    except ValueError as e:
        from json import JSONDecodeError  # imported for a refusal only

        if isinstance(e, JSONDecodeError):
            raise ProfileError(
                source, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
            ) from None
        # integers too long to convert
        raise ProfileError(source, f"invalid JSON: {str(e).split(';')[0]}") from None
    if problems or _may_hold_bad_char(text):
        _find_ambiguity(obj, source)
        if problems:  # fail closed, should the search above ever miss what the hooks saw
            raise ProfileError(source, "duplicate key or NaN/Infinity")
    _check_depth(obj, source)
    return obj


# No runtime config nests anywhere near this deep (a seccomp argument sits at depth 7);
# a deeper document would make later steps (copying, writing it back) recurse too far.
MAX_NESTING = 100


def _check_depth(obj: Any, source: str) -> None:
    """Refuse a document nested deeper than MAX_NESTING, naming where it goes too deep."""
    stack: list[tuple[Any, int]] = [(obj, 0)] if isinstance(obj, (dict, list)) else []
    while stack:  # containers only, without paths: the common case, a document in bounds
        value, depth = stack.pop()
        if depth >= MAX_NESTING:
            _refuse_depth(obj, source)
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))


def _refuse_depth(obj: Any, source: str) -> None:
    """The ProfileError for a document nested too deeply, at the first place found."""
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        if depth >= MAX_NESTING:
            shown = path if len(path) <= 60 else path[:57] + "..."
            raise ProfileError(source, f"nested too deeply: more than {MAX_NESTING} levels (at {shown})")
        if isinstance(value, dict):
            stack.extend((v, key_path(path, k), depth + 1) for k, v in value.items())
        else:
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    raise AssertionError("_check_depth saw a place _refuse_depth did not")  # fail closed


