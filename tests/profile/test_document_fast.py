"""profile.document's string checks without re, against the regular expressions that
say what they must find (written here, as the contract)."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ocishim.profile import document

# A \u0000 or \uD800-\uDFFF escape, or a NUL or surrogate itself: the strings must be searched.
BAD_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\x00\ud800-\udfff]")
BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
# Keys shown bare in a JSON path: no whitespace, brackets, quotes or backslashes.
PLAIN_KEY = re.compile(r'[^\s\[\]"\\]+\Z')

ALPHABET = st.sampled_from(list('aZ0 \t\n[]"\\uUdD89Af0\x00\ud800\udfffé\u2028\x1c\xa0\x7fİ'))
TEXTS = st.lists(ALPHABET, max_size=10).map("".join) | st.text(max_size=10)
ESCAPES = st.builds(lambda before, code, after: f"{before}\\u{code}{after}", TEXTS,
                    st.text(alphabet="0dD89aAfF", min_size=0, max_size=4), TEXTS)


def expected_key_path(path: str, key: str) -> str:
    if PLAIN_KEY.match(key) and key.isprintable() and not BAD_CHAR.search(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


@settings(max_examples=3000, deadline=None)
@given(TEXTS)
def test_key_path(key):
    assert document.key_path("a.b", key) == expected_key_path("a.b", key)
    assert document.key_path("", key) == expected_key_path("", key)


@settings(max_examples=3000, deadline=None)
@given(TEXTS | ESCAPES)
def test_bad_char_and_the_search_trigger(text):
    found = BAD_CHAR.search(text)
    assert document._bad_char(text) == (found.group() if found else None)
    if BAD_ESCAPE.search(text):  # never missed; a wider net only costs a search
        assert document._may_hold_bad_char(text)
