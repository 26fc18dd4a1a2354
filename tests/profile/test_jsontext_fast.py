"""jsontext.loads and the C-encoder paths against the json package, their oracle.

jsontext.loads must give what json.loads gives (the value, or the same exception and
message) for every text, including in a process where the json package was never
imported (json's C scanner then cannot raise its own error by itself).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocishim.profile import jsontext

TEXTS = ['{}', '[]', ' {"a":1} ', '{"a":1}x', '\ufeff{}', '', '  ', '{"a":NaN}',
         '[1e999, -0, 1.50]', '{"a":1,"a":2}', '"\\ud800"', '[1,]', '{"a":\n1}\n\n',
         '[' * 5000 + ']' * 5000, '{"\\u0000":1}', '1', 'nul', '[1 2]', '{not json',
         '"' + '9' * 5000 + '"', '9' * 5000, '{"a": "\x01"}', '[1]\x0c']
BYTES = [b'{"a":1}', '\ufeff{"a":1}'.encode(), '{"a":1}'.encode("utf-16"), b'\xed\xa0\x80',
         b'"\xed\xa0\x80"', b'{"a":\xff}', b'{"a": 1} x', b'', '{"a":1}'.encode("utf-32")]


def outcome(loads, text, **hooks):
    try:
        return "value", repr(loads(text, **hooks))
    except RecursionError:
        return "RecursionError", ""
    except Exception as exc:  # noqa: BLE001 - the exception is the answer compared
        return type(exc).__name__, str(exc)


HOOKS = [{}, {"parse_float": jsontext.parse_float, "parse_int": jsontext.parse_int,
              "object_pairs_hook": lambda pairs: ("pairs", pairs),
              "parse_constant": lambda name: ("constant", name)}]


@pytest.mark.parametrize("text", TEXTS + BYTES, ids=range(len(TEXTS + BYTES)))
@pytest.mark.parametrize("hooks", range(len(HOOKS)))
def test_loads_is_json_loads(text, hooks):
    assert outcome(jsontext.loads, text, **HOOKS[hooks]) == outcome(json.loads, text, **HOOKS[hooks])


@pytest.mark.parametrize("text", TEXTS + BYTES, ids=range(len(TEXTS + BYTES)))
def test_loads_without_json_imported(text):
    """In a fresh process that has not imported json, the answer is json's all the same."""
    code = ("import sys\n"
            "from ocishim.profile import jsontext\n"
            "assert 'json' not in sys.modules and 'json.decoder' not in sys.modules\n"
            "text = eval(sys.stdin.read())\n"
            "try:\n"
            "    print('value', repr(jsontext.loads(text)))\n"
            "except RecursionError:\n"
            "    print('RecursionError')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], input=repr(text), capture_output=True,
                          text=True, check=True)
    kind, message = outcome(json.loads, text)
    expected = "RecursionError" if kind == "RecursionError" else f"{kind} {message}"
    assert proc.stdout.rstrip("\n") == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 2]), st.text(alphabet=' \t\n\r{}[]",:0-9ae.\\u', max_size=4))
def test_loads_on_generated_text(value, indent, tail):
    text = json.dumps(value, indent=indent, ensure_ascii=False) + tail
    for hooks in HOOKS:
        assert outcome(jsontext.loads, text, **hooks) == outcome(json.loads, text, **hooks)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_strings_and_dumps_are_json_dumps(value):
    """Without JsonFloat/JsonInt in the value, dumps is json.dumps(indent=2) and a newline."""
    expected = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    try:
        expected.encode()
    except UnicodeEncodeError:  # lone surrogates: dumps escapes them (tested in test_jsontext)
        return
    assert jsontext.dumps(value) == expected


def test_prerendered_container_is_written_as_dumps_writes_it():
    doc = {"a": [1, {"b": ["x", {"c": 2}]}], "d": {"e": "é"}}
    for inner in (doc["a"], doc["a"][1], doc["a"][1]["b"], doc["d"]):
        assert jsontext.dumps(doc, {id(inner): jsontext.dumps(inner)}) == jsontext.dumps(doc)
    # The text given is what is written: a different text shows (so it is not ignored).
    assert '"d": {"zz": 1}' in jsontext.dumps(doc, {id(doc["d"]): '{"zz": 1}\n'})


def test_hash_text_forms_never_meet(monkeypatch):
    """Equal texts only for values that dumps writes alike; the two forms are marked."""
    monkeypatch.setattr(jsontext, "_made", [0])  # as in a process that has made none yet
    plain = jsontext.hash_text({"a": [1, "x"]})
    made = jsontext.JsonFloat("1.50")  # from now on this process uses the dumps form
    assert plain.startswith("c") and plain == 'c{"a":[1,"x"]}'
    assert jsontext.hash_text({"a": [1, "x"]}) == "t" + jsontext.dumps({"a": [1, "x"]})
    assert jsontext.hash_text([made]) != jsontext.hash_text([jsontext.JsonFloat("1.5")])


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_plain_dumps_is_json_dumps_sorted(value):
    assert jsontext.plain_dumps(value) == json.dumps(value, sort_keys=True)
