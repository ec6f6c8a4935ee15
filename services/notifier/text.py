"""Slack text rules: escaping and truncation that keep a message valid.

Slack treats ``&``, ``<`` and ``>`` as control characters: ``<!channel>`` pings a whole channel
and ``<url|label>`` is a link. It decodes ``&amp;``, ``&lt;`` and ``&gt;`` back for display, so
every text from events is escaped, in ``plain_text`` objects as well as in mrkdwn.

Block Kit rejects a block whose text is over its limit, so text is cut to fit with the marker
counted in the limit, never inside an entity or inside a user-perceived character. Lengths are
counted in Unicode code points.
"""

from __future__ import annotations

import unicodedata

# Block Kit limits, in characters. slack_sdk 3.48's block models check the header (150) and
# section text (3000) limits. The field limit (2000) and the 3000 of any text object are from
# Slack's Block Kit reference as Block Kit libraries quote it. slack_sdk does not check them.
HEADER_TEXT_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
SECTION_FIELD_LIMIT = 2000
CONTEXT_TEXT_LIMIT = 3000
# Slack truncates the top-level ``text`` of a message beyond this (slack_sdk's Message model).
MESSAGE_TEXT_LIMIT = 40_000

TRUNCATION_MARKER = "…"

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ZERO_WIDTH_JOINER = "\u200d"


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` for Slack and drop code points UTF-8 cannot encode."""
    return "".join(_ENTITIES.get(char, char) for char in clean(text))


def clean(text: str) -> str:
    """Return ``text`` without lone surrogates, which are not valid UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _joins_previous(char: str) -> bool:
    """Return whether ``char`` joins the character before it, like a combining mark."""
    if char == _ZERO_WIDTH_JOINER or unicodedata.combining(char):
        return True
    if unicodedata.category(char) in {"Mn", "Me", "Mc"}:
        return True
    code = ord(char)
    return 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` back so that it falls between two user-perceived characters."""
    while 0 < cut < len(text) and (
        _joins_previous(text[cut]) or text[cut - 1] == _ZERO_WIDTH_JOINER
    ):
        cut -= 1
    if 0 < cut < len(text) and _is_regional_indicator(text[cut]):
        run = 0
        while cut - run > 0 and _is_regional_indicator(text[cut - run - 1]):
            run += 1
        if run % 2 == 1:
            cut -= 1  # the cut would split a flag, which is a pair of regional indicators
    return cut


def truncate(text: str, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    """Cut already-escaped ``text`` to at most ``limit`` characters, the marker included.

    An entity such as ``&amp;`` is kept whole or dropped whole.
    """
    if limit < len(marker):
        raise ValueError(f"limit {limit} is shorter than the truncation marker {marker!r}")
    if len(text) <= limit:
        return text
    cut = limit - len(marker)
    entity_start = text.rfind("&", max(0, cut - 5), cut)
    if entity_start != -1 and text.find(";", entity_start, cut) == -1:
        cut = entity_start  # the cut would fall inside an entity
    cut = _safe_cut(text, cut)
    return text[:cut] + marker


def escape_and_truncate(text: str, limit: int) -> str:
    """Escape ``text`` and cut it to ``limit`` characters, the marker included."""
    return truncate(escape(text), limit)
