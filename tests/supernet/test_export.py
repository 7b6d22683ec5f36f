"""Export: save/load round trip, ONNX fp32 and int8, `slimformer.load`, folder format errors.

Models are random subnets of a tiny space (hidden <= 64) so everything runs in seconds on CPU.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import slimformer
from slimformer.errors import ModelFormatError
from slimformer.supernet.export import export_folder, save_subnet
from slimformer.supernet.extract import extract
from slimformer.supernet.load import load_subnet
from slimformer.supernet.model import Supernet
from slimformer.supernet.onnx_export import (
    check_batch,
    export_onnx,
    int8_weight_type,
    onnx_logits,
    onnx_session,
    quantize_onnx,
)

LABELS = ["negative", "positive"]
TEXTS = [
    "the movie was good",
    "this film is really bad and the staff were awful",
    "what a wonderful hotel",
    "i think the food was very boring",
    "",  # empty text: only [CLS] [SEP], the most padding in the batch
    "overall the show is great and the music was lovely " * 20,  # longer than max_length: truncated
]
# Slots: conv, identity, mha and ffn; a block of identities only; each conv kernel.
MIXED = {
    "hidden": 48,
    "blocks": [
        ["conv:3", "id", "mha:2", "ffn:128"],
        ["conv:7", "conv:5", "id", "id"],
        ["id", "mha:4", "ffn:128", "conv:3"],
    ],
}
SPARSE = {
    "hidden": 16,
    "blocks": [["id", "id", "id", "id"], ["conv:5", "id", "id", "id"], ["id", "id", "id", "mha:2"]],
}


@pytest.fixture(scope="module")
def supernet(space) -> Supernet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Supernet(space)
    return net.eval()


def subnet(supernet: Supernet, arch):
    """A SubNet whose classifier is scaled up: random logits are nearly tied, trained ones are not."""
    model = extract(supernet, arch, labels=LABELS)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def mixed_model(supernet, space):
    return subnet(supernet, space.parse(MIXED))


@pytest.fixture(scope="module")
def exported(mixed_model, tokenizer, tmp_path_factory) -> dict:
    """One fully exported folder (weights, ONNX fp32 and int8), shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("exported") / "model"
    return export_folder(mixed_model, tokenizer, folder, metrics={"accuracy": 0.875, "latency_ms": 1.5})


@pytest.fixture(scope="module")
def saved(mixed_model, tokenizer, tmp_path_factory) -> Path:
    """A saved (torch-only) folder; tests that break files copy it first."""
    return save_subnet(mixed_model, tokenizer, tmp_path_factory.mktemp("saved") / "model")


def logits(model, batch) -> np.ndarray:
    with torch.no_grad():
        return model(**batch)["logits"].numpy()


# --- save / load ---------------------------------------------------------------------------------


def test_save_load_roundtrip_gives_identical_logits(mixed_model, tokenizer, tmp_path):
    metrics = {"accuracy": np.float32(0.9), "per_class": {"negative": np.float64(0.5)}}
    folder = save_subnet(mixed_model, tokenizer, tmp_path / "m", metrics=metrics)
    model, tok, config = load_subnet(folder)
    batch = check_batch(mixed_model.config, 4, 19, seed=3)
    np.testing.assert_array_equal(logits(model, batch), logits(mixed_model, batch))
    assert tok(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    assert config["format"] == "slimformer-subnet" and config["format_version"] == 1
    assert config["arch_hash"] == mixed_model.arch.hash
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["tokenizer"]["max_length"] == 128
    stored = json.loads((folder / "metrics.json").read_text())
    assert stored["accuracy"] == pytest.approx(0.9) and stored["per_class"] == {"negative": 0.5}
    card = (folder / "README.md").read_text()
    assert mixed_model.arch.hash in card and "| accuracy | 0.9 |" in card and "conv:7" in card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp sibling left behind


def test_save_replaces_an_existing_folder(mixed_model, tokenizer, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "stale.txt").write_text("old")
    save_subnet(mixed_model, tokenizer, folder)
    assert not (folder / "stale.txt").exists() and not (folder / "metrics.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_crash_while_saving_leaves_no_folder(mixed_model, tmp_path):
    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_subnet(mixed_model, BrokenTokenizer(), tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


# --- ONNX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["mixed", "sparse", "largest", "smallest", "sample"])
def test_onnx_matches_torch_with_padding_at_two_shapes(which, supernet, space, tmp_path):
    arch = {"mixed": space.parse(MIXED), "sparse": space.parse(SPARSE), "largest": space.largest(),
            "smallest": space.smallest(), "sample": space.sample(7)}[which]
    model = subnet(supernet, arch)
    path = export_onnx(model, tmp_path)
    sess = onnx_session(path)
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        (n, "tensor(int64)") for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert all(isinstance(d, str) for i in sess.get_inputs() for d in i.shape)  # batch and sequence dynamic
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    for batch, seq, seed in [(1, 5, 0), (5, 37, 1)]:  # the export dummy was (2, 16)
        inputs = check_batch(model.config, batch, seq, seed)
        assert inputs["attention_mask"].min() == 0 or batch == 1
        np.testing.assert_allclose(onnx_logits(sess, inputs), logits(model, inputs), atol=1e-4, rtol=0)


def test_export_folder_reports_files_sizes_and_accuracy(exported):
    folder = Path(exported["folder"])
    names = {"config.json", "model.safetensors", "model.onnx", "model.int8.onnx", "README.md", "metrics.json",
             "tokenizer.json"}
    assert names <= set(exported["sizes"])
    assert all(exported["sizes"][n] == (folder / n).stat().st_size for n in names)
    assert exported["paths"]["model.onnx"] == str(folder / "model.onnx")
    assert exported["onnx_max_abs_diff"] < 1e-4
    assert exported["int8_weight_type"] == "QInt8"
    assert "model.int8.onnx" in (folder / "README.md").read_text()  # card rewritten with the files table
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_int8_is_smaller_and_mostly_agrees_with_fp32(exported, mixed_model):
    sizes = exported["sizes"]
    assert sizes["model.int8.onnx"] < sizes["model.onnx"]
    inputs = check_batch(mixed_model.config, 64, 24, seed=5)
    fp32 = onnx_logits(exported["paths"]["model.onnx"], inputs)
    int8 = onnx_logits(exported["paths"]["model.int8.onnx"], inputs)
    assert np.isfinite(int8).all()
    assert (int8.argmax(-1) == fp32.argmax(-1)).mean() >= 0.8


def test_quantize_onnx_into_a_folder(exported, tmp_path):
    out = quantize_onnx(Path(exported["paths"]["model.onnx"]), tmp_path)
    assert out == tmp_path / "model.int8.onnx" and int8_weight_type(out) == "QInt8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx"]  # temp files cleaned up


# --- slimformer.load -------------------------------------------------------------------------------


def test_load_predicts_label_names_with_both_backends(exported):
    clf = slimformer.load(exported["folder"])
    preds = clf.predict(TEXTS)
    assert len(preds) == len(TEXTS) and set(preds) <= set(LABELS)
    assert clf(TEXTS) == preds
    onnx_clf = slimformer.load(exported["folder"], backend="onnx")
    assert onnx_clf.predict(TEXTS) == preds
    probs, onnx_probs = clf.predict_proba(TEXTS), onnx_clf.predict_proba(TEXTS)
    for p, q, label in zip(probs, onnx_probs, preds, strict=True):
        assert set(p) == set(LABELS) and abs(sum(p.values()) - 1) < 1e-6
        assert max(p, key=p.get) == label
        assert all(abs(p[k] - q[k]) < 1e-4 for k in LABELS)
    assert slimformer.load(exported["folder"], backend="onnx", quantized=True).predict(TEXTS[:2])
    assert clf.predict([]) == [] and onnx_clf.predict_proba([]) == []


def test_load_matches_the_model_on_tokenized_text(exported, mixed_model, tokenizer):
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    ref = logits(mixed_model, dict(enc))
    np.testing.assert_allclose(slimformer.load(exported["folder"]).logits(TEXTS), ref, atol=1e-5)
    # Batches are formed longest first; each row must still come back in its text's place.
    np.testing.assert_allclose(slimformer.load(exported["folder"], batch_size=2).logits(TEXTS), ref, atol=1e-5)


def test_load_rejects_bad_arguments(exported):
    with pytest.raises(ValueError, match="backend"):
        slimformer.load(exported["folder"], backend="tensorrt")
    with pytest.raises(TypeError):
        slimformer.load(exported["folder"]).predict("one string")


def test_onnx_backend_runs_on_the_threads_it_is_given(exported):
    # A Ray task evaluates on its one core: onnxruntime must not take every core the machine has.
    default = slimformer.load(exported["folder"], backend="onnx")
    one = slimformer.load(exported["folder"], backend="onnx", threads=1)
    assert one._run.session.get_session_options().intra_op_num_threads == 1
    assert abs(one.logits(TEXTS) - default.logits(TEXTS)).max() < 1e-5
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            slimformer.load(exported["folder"], backend="onnx", threads=bad)


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_onnx_backend_and_import_never_load_torch(exported, tmp_path):
    code = f"""
import sys
import slimformer
assert "torch" not in sys.modules, "import slimformer imported torch"
clf = slimformer.load({exported["folder"]!r}, backend="onnx")
print(clf.predict({TEXTS!r}))
assert "torch" not in sys.modules, "the onnx backend imported torch"
"""
    out = run_python(code, tmp_path)
    expected = slimformer.load(exported["folder"]).predict(TEXTS)
    assert ast.literal_eval(out.strip().splitlines()[-1]) == expected


def test_readme_snippet_runs_with_plain_onnxruntime(exported, tmp_path):
    """The model card's snippet, run with slimformer made unimportable, predicts what slimformer does."""
    card = (Path(exported["folder"]) / "README.md").read_text()
    snippet = re.search(r"## Use with plain onnxruntime.*?```python\n(.*?)```", card, re.S).group(1)
    snippet = snippet.replace('"path/to/this/folder"', repr(exported["folder"]))
    snippet = snippet.replace('["a first text", "another one"]', repr(TEXTS))
    code = 'import sys\nsys.modules["slimformer"] = None  # any slimformer import now fails\n' + snippet
    code += '\nassert "torch" not in sys.modules\n'
    out = run_python(code, tmp_path)
    expected = slimformer.load(exported["folder"]).predict(TEXTS)
    assert ast.literal_eval(out.strip().splitlines()[-1]) == expected


# --- folder format errors --------------------------------------------------------------------------


def _rewrite_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _rewrite_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


BREAKAGES = {
    "no config": (lambda f: (f / "config.json").unlink(), r"config\.json: missing"),
    "config not json": (lambda f: (f / "config.json").write_text("{oops"), r"config\.json: unreadable"),
    "wrong format": (lambda f: _rewrite_config(f, format="hf-bert"), r"config\.json: format is 'hf-bert'"),
    "future version": (lambda f: _rewrite_config(f, format_version=9), r"config\.json: format_version 9"),
    "bad arch": (
        lambda f: _rewrite_config(f, arch={"hidden": 48, "blocks": [["mha:x"]]}),
        r"config\.json: bad model config",
    ),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), r"model\.safetensors: missing"),
    "garbage weights": (
        lambda f: (f / "model.safetensors").write_bytes(b"\0" * 64),
        r"model\.safetensors: unreadable",
    ),
    "other arch": (
        lambda f: _rewrite_config(f, arch={**MIXED, "hidden": 64}),
        r"model\.safetensors: tensor 'embeddings\.word_embeddings\.weight' has shape \[382, 48\]",
    ),
    "missing tensor": (
        lambda f: _rewrite_weights(f, lambda s: s.pop("blocks.1.0.pointwise.weight")),
        r"model\.safetensors: tensor 'blocks\.1\.0\.pointwise\.weight' missing",
    ),
    "extra tensor": (
        lambda f: _rewrite_weights(f, lambda s: s.update({"blocks.0.1.extra": torch.zeros(2)})),
        r"model\.safetensors: tensor 'blocks\.0\.1\.extra' is not part",
    ),
    "no tokenizer": (
        lambda f: [(f / n).unlink() for n in ("tokenizer.json", "vocab.txt") if (f / n).exists()],
        r"tokenizer\.json: missing",
    ),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_load_errors_name_the_bad_file(case, saved, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    breakage, pattern = BREAKAGES[case]
    breakage(folder)
    with pytest.raises(ModelFormatError, match=pattern):
        load_subnet(folder)
    with pytest.raises(ModelFormatError, match=pattern.split(":")[0]):
        slimformer.load(folder)


def test_onnx_backend_errors_name_the_missing_file(saved, tmp_path):
    with pytest.raises(ModelFormatError, match=r"model\.onnx: missing"):
        slimformer.load(saved, backend="onnx")
    with pytest.raises(ModelFormatError, match="no such directory"):
        load_subnet(tmp_path / "nowhere")
