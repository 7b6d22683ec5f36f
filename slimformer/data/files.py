"""Read a user's labelled data file (CSV or JSON lines) into examples and a label map.

Every problem is a DataError whose message starts with the file name and, where one line is at
fault, the 1-based line ("reviews.csv line 7: empty text"). For CSV the header is line 1 and a
quoted text that spans lines is reported at the line it starts on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slimformer.data.types import Example
from slimformer.errors import DataError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"

_INT_LABEL = re.compile(r"[+-]?\d+")


@dataclass
class LabelledFile:
    """A parsed labelled file.

    Attributes:
        path: the file read.
        format: "csv" or "jsonl".
        examples: one per data row, in file order, label ids already mapped.
        labels: `labels[i]` is the name of label id i.
        label_kind: "integer" (names are str(int), ids follow numeric order) or "string" (sorted names).
        sha256: hex digest of the file's bytes.
        lines: the 1-based line each example started on, parallel to `examples`.
    """

    path: Path
    format: str
    examples: list[Example]
    labels: list[str]
    label_kind: str
    sha256: str
    lines: list[int] = field(default_factory=list)

    @property
    def label_map(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}


def read_labelled_file(
    path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, display_name: str | None = None
) -> LabelledFile:
    """Read a `.csv`, `.jsonl` or `.json` (one object per line) file with `text` and `label` columns.

    Labels may be strings (ids follow sorted names) or integers (ids follow sorted values, so
    0/1 stay 0/1 and 1..5 become 0..4; names are the original numbers). In a CSV, a label column
    whose every value is an integer is read as integers.

    Args:
        path: the file.
        max_bytes: files larger than this are refused before they are read.
        display_name: the name used in error messages; defaults to the file's name (an upload
            stored under a temporary name can pass the name the user knows).

    Returns:
        The examples, label names and file facts as a `LabelledFile`.

    Raises:
        DataError: missing file, unknown extension, file over `max_bytes`, non-UTF-8 bytes,
            no rows, a missing `text`/`label` column, bad CSV or JSON on a line, an empty text
            or label, mixed label types (JSON), or only one class.
    """
    path = Path(path)
    name = display_name or path.name
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        known = ", ".join(CSV_SUFFIXES + JSONL_SUFFIXES)
        raise DataError(f"{name}: unknown extension '{path.suffix}' (expected one of {known})")
    if not path.is_file():
        raise DataError(f"{name}: file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{name}: {size} bytes is over the limit of {max_bytes} bytes")
    with path.open("rb") as f:
        # Read one byte past the limit so a file that grew since stat() is still refused.
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"{name}: over the limit of {max_bytes} bytes")
    text = _decode(name, data)

    fmt = "csv" if suffix in CSV_SUFFIXES else "jsonl"
    rows = list(_csv_rows(name, text) if fmt == "csv" else _jsonl_rows(name, text))
    if not rows:
        raise DataError(f"{name}: no rows")
    labels, ids, kind = _map_labels(name, [(line, raw) for line, _, raw in rows], fmt)
    examples = [Example(t, i) for (_, t, _), i in zip(rows, ids, strict=True)]
    return LabelledFile(
        path=path,
        format=fmt,
        examples=examples,
        labels=labels,
        label_kind=kind,
        sha256=hashlib.sha256(data).hexdigest(),
        lines=[line for line, _, _ in rows],
    )


def _decode(name: str, data: bytes) -> str:
    # A UTF-8 byte order mark is valid UTF-8 that editors on Windows add; it is not part of the header.
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name} line {line}: not UTF-8 (byte 0x{data[e.start]:02x})") from None


def _csv_rows(name: str, text: str) -> Iterator[tuple[int, str, str | int]]:
    """(line, text, raw label) per data row of a CSV; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise DataError(f"{name} line {reader.line_num}: bad CSV ({e})") from None
    if header is None:
        return
    columns = [c.strip().lower() for c in header]
    for wanted in (TEXT_COLUMN, LABEL_COLUMN):
        if wanted not in columns:
            found = ", ".join(repr(c) for c in header) or "none"
            raise DataError(f"{name} line 1: missing column '{wanted}' (columns: {found})")
    ti, li = columns.index(TEXT_COLUMN), columns.index(LABEL_COLUMN)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as e:
            raise DataError(f"{name} line {start}: bad CSV ({e})") from None
        if row is None:
            return
        if not row:
            continue
        # A wrong field count almost always means an unquoted comma in the text: say so at its line.
        if len(row) != len(header):
            raise DataError(f"{name} line {start}: {len(row)} fields, the header has {len(header)}")
        yield start, _check_text(name, start, row[ti]), _check_label_text(name, start, row[li])


def _jsonl_rows(name: str, text: str) -> Iterator[tuple[int, str, str | int]]:
    """(line, text, raw label) per non-blank line of a JSON lines file."""
    # Split on "\n" only: str.splitlines() also breaks at U+2028 and friends, which JSON allows raw
    # inside strings, and would shift the line numbers away from what an editor shows.
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            hint = "; expected one JSON object per line" if raw.lstrip().startswith("[") else ""
            raise DataError(f"{name} line {line}: invalid JSON ({e.msg}){hint}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{name} line {line}: expected a JSON object, found {type(obj).__name__}")
        for wanted in (TEXT_COLUMN, LABEL_COLUMN):
            if wanted not in obj:
                raise DataError(f"{name} line {line}: missing column '{wanted}'")
        value = obj[TEXT_COLUMN]
        if not isinstance(value, str):
            raise DataError(f"{name} line {line}: text must be a string, found {type(value).__name__}")
        yield line, _check_text(name, line, value), _check_json_label(name, line, obj[LABEL_COLUMN])


def _check_text(name: str, line: int, text: str) -> str:
    if not text.strip():
        raise DataError(f"{name} line {line}: empty text")
    return text


def _check_label_text(name: str, line: int, label: str) -> str:
    label = label.strip()
    if not label:
        raise DataError(f"{name} line {line}: empty label")
    return label


def _check_json_label(name: str, line: int, label: object) -> str | int:
    if isinstance(label, bool):  # bool is an int subclass; true/false is not a class id we can trust
        raise DataError(f"{name} line {line}: label must be a string or an integer, found bool")
    if isinstance(label, int):
        return label
    if isinstance(label, float) and label.is_integer():  # 1.0 from a pandas export means class 1
        return int(label)
    if isinstance(label, str):
        return _check_label_text(name, line, label)
    raise DataError(f"{name} line {line}: label must be a string or an integer, found {label!r}")


def _map_labels(name: str, raw: list[tuple[int, str | int]], fmt: str) -> tuple[list[str], list[int], str]:
    """Label names, one id per row, and the label kind ("integer" or "string")."""
    if fmt == "jsonl":
        first_line, first = raw[0]
        for line, v in raw:
            if isinstance(v, int) != isinstance(first, int):
                was, now = (
                    ("an integer", "a string") if isinstance(first, int) else ("a string", "an integer")
                )
                raise DataError(f"{name} line {line}: label is {now} but line {first_line}'s is {was}")
    values: list[str | int] = [v for _, v in raw]
    # CSV has no types, and "0"/"1" in JSON mean the same classes as 0/1: whole numbers are integers,
    # so their ids follow numeric order ("10" after "9").
    if all(isinstance(v, int) or _INT_LABEL.fullmatch(v) for v in values):
        values = [int(v) for v in values]
    distinct = sorted(set(values))  # all ints or all strs here, so this sorts numerically or by name
    if len(distinct) < 2:
        raise DataError(f"{name}: only one class ({distinct[0]!r}) in {len(values)} rows; need at least 2")
    ids = {v: i for i, v in enumerate(distinct)}
    kind = "integer" if isinstance(distinct[0], int) else "string"
    return [str(v) for v in distinct], [ids[v] for v in values], kind
