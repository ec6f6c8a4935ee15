"""Slack escaping and truncation: limits, entities, and whole characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.text import (
    HEADER_TEXT_LIMIT,
    SECTION_TEXT_LIMIT,
    TRUNCATION_MARKER,
    escape,
    escape_and_truncate,
    truncate,
)


def test_escape_control_characters():
    assert escape("a & b <!channel> > c") == "a &amp; b &lt;!channel&gt; &gt; c"


def test_escape_leaves_other_text():
    assert escape("*bold* 'quote' \"x\" ü 🚀") == "*bold* 'quote' \"x\" ü 🚀"


def test_escape_drops_lone_surrogate():
    escaped = escape("bad \ud83d half")
    escaped.encode("utf-8")  # raises if a surrogate survived
    assert "\ud83d" not in escaped


def test_short_text_unchanged():
    assert truncate("short", 10) == "short"


def test_text_at_limit_unchanged():
    assert truncate("x" * 150, HEADER_TEXT_LIMIT) == "x" * 150


def test_marker_counted_in_limit():
    result = truncate("x" * 151, HEADER_TEXT_LIMIT)
    assert len(result) == HEADER_TEXT_LIMIT
    assert result.endswith(TRUNCATION_MARKER)


def test_cut_never_splits_entity():
    text = escape("a" * 2995 + "&&&&&&")
    result = truncate(text, SECTION_TEXT_LIMIT)
    assert len(result) <= SECTION_TEXT_LIMIT
    body = result.removesuffix(TRUNCATION_MARKER)
    assert body.endswith("a") or body.endswith("&amp;")


def test_cut_keeps_emoji_sequence_whole():
    family = "👩\u200d👩\u200d👧"
    text = "x" * 146 + family + "tail"
    result = truncate(text, HEADER_TEXT_LIMIT)
    assert len(result) <= HEADER_TEXT_LIMIT
    assert "\u200d" not in result[-3:]
    assert result == "x" * 146 + TRUNCATION_MARKER


def test_cut_keeps_combining_mark_with_letter():
    text = "x" * 148 + "e\u0301" + "more"
    result = truncate(text, 150)
    assert result == "x" * 148 + TRUNCATION_MARKER


def test_cut_keeps_flag_pair_whole():
    text = "x" * 148 + "🇩🇪🇫🇷"
    result = truncate(text, 150)
    assert result == "x" * 148 + TRUNCATION_MARKER


def test_limit_shorter_than_marker_rejected():
    with pytest.raises(ValueError, match="shorter than the truncation marker"):
        truncate("abc", 0)


@given(st.text(), st.integers(min_value=1, max_value=200))
def test_truncated_text_fits_and_encodes(text, limit):
    result = escape_and_truncate(text, limit)
    assert len(result) <= limit
    result.encode("utf-8")
    # Every '&' left in the result starts a whole entity.
    for index, char in enumerate(result):
        if char == "&":
            assert result[index:].startswith(("&amp;", "&lt;", "&gt;"))
