"""Cut long documents into short passages, on sentence boundaries where possible."""

from __future__ import annotations

import re

DEFAULT_MAX_CHARS = 1000

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before whitespace.
# Two fixed-width look-behinds, because Python's look-behind cannot vary in width.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'\u201d\u2019)\]])\s+")


def chunk_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Split a text into passages of at most `max_chars` characters.

    Whitespace runs become single spaces. Whole sentences are packed greedily; a sentence longer
    than `max_chars` is cut between words, and a word longer than that is cut where it must be.

    Args:
        text: any text.
        max_chars: the longest passage, at least 1.

    Returns:
        The passages in order, none empty; [] for a text of only whitespace.

    Raises:
        ValueError: if `max_chars` < 1.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    text = " ".join(text.split())
    if not text:
        return []
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend(_fit(sentence, max_chars))
    return _pack(pieces, max_chars)


def _fit(sentence: str, max_chars: int) -> list[str]:
    """The sentence itself if short enough, else its words (each cut to `max_chars`)."""
    if len(sentence) <= max_chars:
        return [sentence] if sentence else []
    words: list[str] = []
    for word in sentence.split(" "):
        words.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(words, max_chars)


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with spaces while the result stays within `max_chars`."""
    out: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= max_chars:
            current = f"{current} {piece}"
        else:
            out.append(current)
            current = piece
    if current:
        out.append(current)
    return out
