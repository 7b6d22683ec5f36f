"""The whole job in-process on the tiny teacher: stages, Ray block training, resume, outputs."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from slimformer.contracts.spec import JobSpec
from slimformer.workers.pipeline import STAGE_NAMES, completed_stages, format_table, run_job, stage_marker
from slimformer.workers.progress import JobCancelled, Reporter


@pytest.fixture(scope="module")
def spec(tiny_teacher_dir, task_csv):
    # A parameter budget every student meets: it makes the job count size, so it trims its vocabulary.
    return JobSpec(name="tiny", teacher=str(tiny_teacher_dir), dataset=str(task_csv), corpus=None, preset="tiny",
                   search={"strategy": "sample", "finalists": 2}, budgets={"params_m": 1000})


class Recorder(Reporter):
    def __init__(self, cancel_at: str | None = None):
        self.started: list[str] = []
        self.candidates: list[dict] = []
        self.cancel_at = cancel_at
        self.current = ""

    def stage_started(self, stage, index, total):
        self.started.append(stage)
        self.current = stage

    def candidate(self, record):
        self.candidates.append(record)

    def check_cancelled(self):
        if self.cancel_at == self.current:
            raise JobCancelled("cancelled by test")


@pytest.fixture(scope="module")
def finished_run(spec, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    recorder = Recorder()
    results = run_job(spec, run_dir, recorder, use_ray=False, cache_dir=tmp_path_factory.mktemp("cache"))
    return run_dir, results, recorder


def test_job_runs_every_stage_and_writes_its_outputs(finished_run):
    run_dir, results, recorder = finished_run
    assert recorder.started == STAGE_NAMES
    assert completed_stages(run_dir) == STAGE_NAMES
    assert len(results["finalists"]) == 2 and len(recorder.candidates) == 2
    assert len(results["blocks"]) == 3
    for block in results["blocks"]:
        # The warm start is exact for teacher-shaped paths, so a start can be ~0; a few steps must not blow up
        # (relative MSE: 1.0 is as far off as predicting zeros).
        assert 0 <= block["loss_end"] < 0.25
    tuned = json.loads((run_dir / "task.json").read_text())["regions"]
    assert [r["region"] for r in tuned] == ["H16", "H32", "H48", "H64"] and all(r["steps"] == 4 for r in tuned)
    assert all(set(r["loss_end"]) == {"largest", "smallest", "random"} for r in tuned)
    assert (run_dir / "supernet" / "task" / "H64.safetensors").exists()
    export = results["export"]
    best = next(f for f in results["finalists"] if f["hash"] == export["best"])
    assert (run_dir / "candidates" / export["best"] / "model" / "model.onnx").exists()
    for finalist in results["finalists"]:  # each finalist's task measured its ONNX files; finalize read them
        measured = json.loads((run_dir / "candidates" / finalist["hash"] / "variant_accuracy.json").read_text())
        for variant in ("fp32", "int8"):
            assert finalist["variants"][variant]["test_accuracy"] == measured[variant]["test_accuracy"] is not None
    assert best["latency_torch_ms"] > 0 and best["latency_onnx_ms"] > 0 and best["predicted_latency_ms"] > 0
    assert best["predicted_latency_rechecked_ms"] > 0  # the table refitted on archs measured with the finalists
    assert any(f["pareto"] for f in results["finalists"])
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(run_dir / "candidates.csv")))
    assert {r["hash"] for r in rows} == {f["hash"] for f in results["finalists"]}
    assert json.loads((run_dir / "results.json").read_text())["teacher"]["params"] > 0
    assert "teacher" in format_table(results) and "TF-IDF + LR" in format_table(results)
    # A balanced task is judged on accuracy; macro-F1 and per-class figures are measured beside it.
    assert results["metric"] == "accuracy" and "dev accuracy" in format_table(results)
    for finalist in results["finalists"]:
        assert 0 <= finalist["dev_macro_f1"] <= 1 and 0 <= finalist["test_macro_f1"] <= 1
        assert set(finalist["dev_per_class"]) == {"negative", "positive"}
    assert 0 <= results["teacher"]["dev_macro_f1"] <= 1 and 0 <= results["baseline"]["test_macro_f1"] <= 1
    assert all(r["dev_macro_f1"] for r in rows)
    assert 0.5 < results["baseline"]["dev_accuracy"] <= 1 and results["baseline"]["latency_ms"] > 0
    # Every finalist's model card compares it with the teacher and the baseline.
    card = (run_dir / "candidates" / export["best"] / "model" / "README.md").read_text()
    section = card[card.index("## Compared with"):]
    assert "| teacher (" in section and "fine-tuned by slimformer) |" in section
    assert "| TF-IDF + logistic regression |" in section
    assert f"| this model ({export['best']}) |" in section and section.index("## Files") > 0


def test_a_factorised_pick_is_distilled_from_its_full_rank_self(finished_run):
    from dataclasses import replace

    from slimformer.search_space import Arch

    run_dir, results, _ = finished_run
    finalists = {f["hash"] for f in results["finalists"]}
    factorised = [f for f in results["finalists"] if Arch.from_dict(f["arch"]).embedding_rank is not None]
    assert factorised  # the tiny job's sampled picks (fixed seed) have factorised tables
    for finalist in factorised:
        base = replace(Arch.from_dict(finalist["arch"]), embedding_rank=None).hash
        trained = json.loads((run_dir / "candidates" / finalist["hash"] / "trained.json").read_text())
        assert trained["twin_of"] == base and trained["trained"] == "word factors"
        # The full-rank model was fine-tuned to distil from, and is kept, but is not a finalist.
        assert (run_dir / "candidates" / base / "trained.json").exists() and base not in finalists
        assert finalist["origin"] != "embedding_twin"  # still the search's pick


def test_a_factorised_pick_reseeded_is_trained_in_seed_folders_and_not_exported(spec, finished_run, tmp_path):
    # What the quality benchmark's ranking runs for a second seed: base and twin both under that seed.
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.embedding_twins import twin_base
    from slimformer.workers.stages.finalize import train_chosen

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    ctx = RunContext(spec, copy, use_ray=False)
    arch = next(a for a in (ctx.space.parse(c["arch"]) for c in read_json(copy / "chosen.json"))
                if a.embedding_rank is not None)
    record = train_chosen(ctx, [arch], seed=7)[0]
    base = twin_base(ctx, arch)
    twin, original = copy / "candidates" / f"{arch.hash}-seed7", copy / "candidates" / f"{base.hash}-seed7"
    assert record["twin_of"] == base.hash and read_json(twin / "trained.json")["hash"] == arch.hash
    assert (original / "trained.json").exists() and not (twin / "export.json").exists()


def test_on_ray_a_factorised_pick_is_distilled_in_its_bases_task_on_the_idle_cores(
    spec, finished_run, tmp_path, local_ray
):
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.embedding_twins import twin_base
    from slimformer.workers.stages.finalize import train_chosen

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    ctx = RunContext(spec, copy, use_ray=True, cache_dir=tmp_path / "cache")
    arch = next(a for a in (ctx.space.parse(c["arch"]) for c in read_json(copy / "chosen.json"))
                if a.embedding_rank is not None)
    record = train_chosen(ctx, [arch], seed=9)[0]
    base = read_json(copy / "candidates" / f"{twin_base(ctx, arch).hash}-seed9" / "trained.json")
    twin = read_json(copy / "candidates" / f"{arch.hash}-seed9" / "trained.json")
    assert record == twin and twin["twin_of"] == base["hash"]
    # One task (the base, then its twin) on a 2-CPU cluster: it was given both cores, not one.
    assert base["finetune_threads"] == 2 and twin["finetune_threads"] == 2


def test_sampled_finalists_differ_in_size(finished_run):
    _, results, _ = finished_run
    params = sorted(f["params"] for f in results["finalists"])
    assert params[0] < params[-1]


def test_a_finished_job_is_not_run_again(finished_run, spec):
    run_dir, results, _ = finished_run
    recorder = Recorder()
    again = run_job(spec, run_dir, recorder, use_ray=False)
    assert recorder.started == []
    assert again["finalists"] == results["finalists"]


def test_an_interrupted_job_resumes_at_its_first_unfinished_stage(finished_run, spec, tmp_path):
    run_dir, results, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("finalize", "report"):
        stage_marker(copy, name).unlink()
    kept, lost = (f["hash"] for f in results["finalists"])
    shutil.rmtree(copy / "candidates" / lost)
    kept_mtime = (copy / "candidates" / kept / "trained.json").stat().st_mtime_ns
    recorder = Recorder()
    again = run_job(spec, copy, recorder, use_ray=False)
    assert recorder.started == ["finalize", "report"]
    # The finalist trained before the interruption is reused, not trained again; the lost one is redone.
    assert (copy / "candidates" / kept / "trained.json").stat().st_mtime_ns == kept_mtime
    assert (copy / "candidates" / lost / "trained.json").exists()
    by_hash = {f["hash"]: f for f in again["finalists"]}
    assert by_hash[kept]["dev_accuracy"] == results["finalists"][0]["dev_accuracy"]


def test_cancel_stops_the_job_between_steps(spec, tmp_path):
    with pytest.raises(JobCancelled):
        run_job(spec, tmp_path / "run", Recorder(cancel_at="states"), use_ray=False, cache_dir=tmp_path / "cache")
    assert completed_stages(tmp_path / "run") == ["prepare", "baseline"]


def test_blocks_trained_as_ray_tasks_equal_in_process_training(finished_run, tmp_path, local_ray):
    """Real Ray (local, HOME holding ray_bootstrap_config.yaml): same seeds, same weights."""
    import torch
    from safetensors.torch import load_file

    from slimformer.search_space import SearchSpace
    from slimformer.supernet.distill import BlockTrainSettings, Region
    from slimformer.workers.blocks import BlockJob, train_blocks
    from slimformer.workers.context import read_json
    run_dir, _, _ = finished_run
    space = SearchSpace.from_dict(read_json(run_dir / "space.json"))
    settings = BlockTrainSettings(steps=4, batch_size=8, checkpoint_every=2)
    start = [load_file(str(run_dir / "supernet" / "all" / f"block{i}.safetensors")) for i in range(3)]
    jobs = [BlockJob(i, Region(), start[i], 4) for i in range(3)]
    local = train_blocks(space, jobs, run_dir / "states", settings, tmp_path / "local", use_ray=False)
    finished = []
    remote = train_blocks(space, jobs, run_dir / "states", settings, tmp_path / "ray", use_ray=True,
                          on_done=lambda r: finished.append(r.block))
    assert sorted(finished) == [0, 1, 2]
    assert (local_ray / "ray-home" / "ray_bootstrap_config.yaml").exists()
    for a, b in zip(local, remote, strict=True):
        assert a.block == b.block and b.steps == 4
        for key in a.state:
            assert torch.allclose(a.state[key], b.state[key], atol=1e-6), key
    assert all((tmp_path / "ray" / f"block{i}-all.pt").exists() for i in range(3))


def test_search_stage_finds_finalists_within_budgets(spec, finished_run, tmp_path):
    """NSGA-II over the trained tiny supernet, with a parameter budget that rules out part of the space."""
    from slimformer.search_space import SearchSpace, count_params
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.stages.search import compressing_cuts

    run_dir, _, _ = finished_run
    space = SearchSpace.from_dict(read_json(run_dir / "space.json"))
    limit = (count_params(space.smallest(), space) + count_params(space.largest(), space)) / 2 / 1e6
    searched = spec.model_copy(update={"search": spec.search.model_copy(update={"strategy": "nsga2", "trials": 16}),
                                       "budgets": spec.budgets.model_copy(update={"params_m": limit})})
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("search", "finalize", "report"):
        stage_marker(copy, name).unlink()
    shutil.rmtree(copy / "candidates")
    recorder = Recorder()
    results = run_job(searched, copy, recorder, use_ray=False)
    scored = [c for c in recorder.candidates if c["state"] == "scored"]
    assert scored and all(c["params"] <= limit * 1e6 for c in scored)
    search = read_json(copy / "search.json")
    assert len(search["trials"]) == 16 and search["pareto"]
    assert search["scorer"] == "task"  # scored with the task-tuned shared weights
    assert all(0 <= c["shared_dev_accuracy"] <= 1 and c["shared_kl"] >= 0 for c in scored)
    assert {r["hash"] for r in search["trials"] if r.get("proxy") is not None} <= set(search["shared_scores"])
    assert all(f["params"] <= limit * 1e6 for f in results["finalists"])
    # Up to 2 band picks of the search's own, plus every plain cut of the teacher within the budget.
    own = [f for f in results["finalists"] if f["origin"] == "nsga2"]
    cuts = {f["hash"]: f["reference"] for f in results["finalists"] if f["origin"] == "layer_dropped"}
    assert 1 <= len(own) <= 2 and len(own) + len(cuts) == len(results["finalists"])
    # The cuts that compress the teacher enough to be finalists (stages/search.py MIN_CUT_SPEEDUP), within budget.
    compressing = compressing_cuts(RunContext(searched, copy, use_ray=False))
    assert 0 < len(compressing) < len(space.reference_finalists())  # the tiny teacher's first 5 layers: too slow
    within = {a.hash: name for name, a in compressing.items() if count_params(a, space) <= limit * 1e6}
    # Finalists are picked by short-fit scores (plan.short_fit_steps, 2 at the tiny preset): every one has
    # its own, and every cut within budget was fitted too, so the choice below could go either way.
    fitted = search["short_fit_scores"]
    assert search["short_fit_steps"] == 2 and {f["hash"] for f in results["finalists"]} <= set(fitted)
    chosen = read_json(copy / "chosen.json")
    assert all(c["proxy"] == pytest.approx(fitted[c["hash"]]["kl"]) for c in chosen)
    assert all(fitted[h]["kl"] != pytest.approx(search["shared_scores"][h]["kl"]) for h in fitted)
    # One cut per layer count: of two that keep as many teacher layers, the better-scored one.
    proxy = {h: score["kl"] for h, score in fitted.items()}
    best: dict[int, str] = {}
    for h in within:
        depth = len(space.teacher_layers_of(space.parse(search_arch(search, h))))
        if depth not in best or proxy[h] < proxy[best[depth]]:
            best[depth] = h
    assert best and cuts == {h: within[h] for h in best.values()}


def test_each_finalist_is_exported_and_evaluated_by_its_own_training_step(spec, finished_run, tmp_path):
    # What a finalist's Ray task runs (train_and_export): the export and both ONNX files' accuracy are
    # written before finalize's driver sees the finalist, so the driver only times it. A re-run seed is
    # only trained: it is compared, never shipped.
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.stages.finalize import train_finalists

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "candidates")
    ctx = RunContext(spec, copy, use_ray=False)
    archs = [ctx.space.parse(c["arch"]) for c in read_json(copy / "chosen.json")]
    train_finalists(ctx, archs[:1])
    folder = copy / "candidates" / archs[0].hash
    measured = read_json(folder / "variant_accuracy.json")
    assert (folder / "export.json").exists() and (folder / "model" / "model.int8.onnx").exists()
    assert set(measured) == {"fp32", "int8"} and all(0 <= measured[v]["dev_accuracy"] <= 1 for v in measured)
    train_finalists(ctx, archs[:1], seed=7)
    reseeded = copy / "candidates" / f"{archs[0].hash}-seed7"
    assert (reseeded / "trained.json").exists() and not (reseeded / "export.json").exists()


def test_where_the_vocabulary_is_kept_whole_fp32_figures_are_the_fine_tunes_own(spec, finished_run, tmp_path,
                                                                                monkeypatch):
    # The tiny job trims its vocabulary; kept whole, the shipped model is the trained one, and its fp32
    # figures are counted from the fine-tune's own predictions instead of another pass over model.onnx.
    from slimformer.workers import finalist_export
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.stages.finalize import train_finalists
    from slimformer.workers.variants import onnx_metrics

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "candidates")
    monkeypatch.setattr(finalist_export, "trims_vocab", lambda ctx: False)
    ctx = RunContext(spec, copy, use_ray=False)
    arch = ctx.space.parse(read_json(copy / "chosen.json")[0]["arch"])
    train_finalists(ctx, [arch])
    folder = copy / "candidates" / arch.hash
    fit, measured = read_json(folder / "trained.json"), read_json(folder / "variant_accuracy.json")
    assert measured["fp32"] == fit["fit_metrics"] and fit["fit_metrics"]["test_accuracy"] == fit["test_accuracy"]
    assert fit["fit_metrics"]["dev_accuracy"] == fit["dev_accuracy"]
    task = ctx.eval_task
    for split, rows in (("dev", task.dev), ("test", task.test)):  # model.onnx run as a user runs it counts the same
        assert onnx_metrics(folder / "model", rows, False, task.labels, split) == {
            k: v for k, v in measured["fp32"].items() if k.startswith(split)}


def search_arch(search: dict, arch_hash: str) -> dict:
    return next(r["arch"] for r in search["trials"] if r["hash"] == arch_hash)


def test_a_finalist_measured_over_budget_is_kept_but_not_offered(spec, finished_run, tmp_path):
    # The "sample" strategy picks finalists without budgets, so a parameter budget between the two
    # finalists' sizes makes exactly the larger one exceed it when finalize measures them.
    run_dir, results, _ = finished_run
    small, large = sorted(results["finalists"], key=lambda f: f["params"])
    limit = (small["params"] + large["params"]) / 2 / 1e6
    capped = spec.model_copy(update={"budgets": spec.budgets.model_copy(update={"params_m": limit})})
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("finalize", "report"):
        stage_marker(copy, name).unlink()

    class Events(Recorder):
        def __init__(self):
            super().__init__()
            self.events: list[str] = []

        def event(self, message):
            self.events.append(message)

    recorder = Events()
    again = run_job(capped, copy, recorder, use_ray=False)
    by_hash = {f["hash"]: f for f in again["finalists"]}
    assert by_hash[large["hash"]]["budget_violations"] == {"params_m": pytest.approx(large["params"] / 1e6)}
    assert not by_hash[large["hash"]]["within_budget"] and not by_hash[large["hash"]]["pareto"]
    assert by_hash[small["hash"]]["within_budget"] and by_hash[small["hash"]]["pareto"]
    assert again["export"]["best"] == small["hash"] and again["export"]["over_budget"] == [large["hash"]]
    assert any(large["hash"] in e and "over budget" in e for e in recorder.events)
    assert "(over budget)" in format_table(again)


def test_embedding_twins_are_distilled_from_full_rank_finalists_and_measured_beside_them(spec, finished_run,
                                                                                         tmp_path):
    from pydantic import ValidationError

    from slimformer.search_space import Arch
    from slimformer.workers.context import read_json, write_json

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("finalize", "report"):
        stage_marker(copy, name).unlink()
    shutil.rmtree(copy / "candidates")  # a twin may have the arch of a sampled finalist trained there
    # Sampled finalists may have factorised tables already: the chosen archs with full-rank ones get the twins.
    chosen = read_json(copy / "chosen.json")
    for item in chosen:
        item["arch"] = {**item["arch"], "embedding_rank": None}
        item["hash"] = Arch.from_dict(item["arch"]).hash
    write_json(copy / "chosen.json", chosen)
    search = spec.search.model_dump()
    twinned = JobSpec.model_validate({**spec.model_dump(), "search": {**search, "embedding_twins": 1}})
    recorder = Recorder()
    again = run_job(twinned, copy, recorder, use_ray=False)
    by_hash = {f["hash"]: f for f in again["finalists"]}
    twins = [f for f in again["finalists"] if f.get("origin") == "embedding_twin"]
    assert [f["hash"] for f in again["finalists"] if f not in twins] == [c["hash"] for c in chosen]
    assert len(twins) == len(chosen)  # one each (embedding_twins 1); the tiny space has ranks below every H
    space = json.loads((copy / "space.json").read_text())
    for twin in twins:
        original = by_hash[twin["twin_of"]]
        arch, plain = Arch.from_dict(twin["arch"]), Arch.from_dict(original["arch"])
        # The largest rank that saves anything at the original's width, the same blocks, fewer parameters.
        assert arch.blocks == plain.blocks and arch.hidden == plain.hidden
        assert arch.embedding_rank == max(r for r in space["embedding_ranks"] if r < plain.hidden)
        assert twin["params"] < original["params"] and twin["reference"].endswith(f"rank {arch.embedding_rank}")
        assert read_json(copy / "candidates" / twin["hash"] / "trained.json")["distilled_from"] == "finalist"
        assert set(twin["variants"]) == {"fp32", "int8"} and 0 <= twin["test_accuracy"] <= 1
    assert {t["hash"] for t in twins} <= {c["hash"] for c in recorder.candidates}
    # A folder of the twin's arch that holds some other model is not taken for the twin.
    from slimformer.workers.context import RunContext
    from slimformer.workers.embedding_twins import train_twin

    done = copy / "candidates" / twins[0]["hash"] / "trained.json"
    write_json(done, {**read_json(done), "twin_of": "another-finalist"})
    with pytest.raises(RuntimeError, match="not .* twin"):
        train_twin(RunContext(twinned, copy, use_ray=False), twins[0]["twin_of"], twins[0]["arch"]["embedding_rank"])
    with pytest.raises(ValidationError, match="embedding_twins"):
        JobSpec.model_validate({**spec.model_dump(), "search": {**search, "embedding_twins": 4}})


def test_infeasible_budget_fails_the_search_at_once(spec, finished_run, tmp_path):
    from slimformer.errors import InfeasibleBudgetError

    run_dir, _, _ = finished_run
    tight = spec.model_copy(update={"search": spec.search.model_copy(update={"strategy": "nsga2"}),
                                    "budgets": spec.budgets.model_copy(update={"params_m": 0.0001})})
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("search", "finalize", "report"):
        stage_marker(copy, name).unlink()
    recorder = Recorder()
    with pytest.raises(InfeasibleBudgetError, match="params_m") as err:
        run_job(tight, copy, recorder, use_ray=False)
    assert recorder.started == ["search"] and recorder.candidates == []  # refused before any trial
    assert err.value.smallest["params_m"] > 0.0001


def test_finalists_are_trimmed_students_with_fp32_and_int8_figures(finished_run):
    """The job keeps the task's vocabulary; every finalist reports both ONNX variants and its card says which to use."""
    from slimformer.search_space import SearchSpace, count_params
    from slimformer.supernet.load import load_subnet
    from slimformer.workers.context import read_json

    run_dir, results, recorder = finished_run
    vocab = read_json(run_dir / "vocab.json")
    space = SearchSpace.from_dict(read_json(run_dir / "space.json"))
    assert space.student_vocab == vocab["vocab_size"] < vocab["teacher_vocab_size"]
    assert 0 <= vocab["oov_rate_test"] < 0.05  # the tiny task's test words are its train words
    for f in results["finalists"]:
        model, tokenizer, _ = load_subnet(f["folder"])
        assert model.config.vocab_size == len(tokenizer) == f["vocab_size"] == vocab["vocab_size"]
        assert f["params"] == model.num_params() == count_params(space.parse(f["arch"]), space)
        assert f["oov_rate"] == vocab["oov_rate_test"] and "dev_accuracy_full_vocab" in f
        fp32, int8 = f["variants"]["fp32"], f["variants"]["int8"]
        assert fp32["format"] == "hf" and int8["format"] == "onnx-int8"  # the job's runtime is torch
        for v in (fp32, int8):
            assert 0 <= v["dev_accuracy"] <= 1 and 0 <= v["test_accuracy"] <= 1 and v["latency_ms"] > 0
        assert int8["latency_ms"] == f["latency_onnx_int8_ms"] and int8["memory_mb"] < fp32["memory_mb"]
        assert (f["dev_accuracy"], f["test_accuracy"]) == (fp32["dev_accuracy"], fp32["test_accuracy"])
        assert f["recommended_variant"] in ("fp32", "int8") and f["recommended_reason"]
        card = (run_dir / "candidates" / f["hash"] / "model" / "README.md").read_text()
        assert "## Variants" in card and f"Recommended: **{f['recommended_variant']}**" in card
        assert f"{vocab['vocab_size']:,} of the teacher's" in card
        stored = read_json(run_dir / "candidates" / f["hash"] / "model" / "metrics.json")["variants"]["int8"]
        assert stored == {k: v for k, v in int8.items() if k not in ("budget_violations", "within_budget")}
    assert all("variants" in c for c in recorder.candidates)  # what the service stores in candidates.metrics


def test_an_onnxruntime_job_puts_a_winning_int8_variant_on_the_front(spec, finished_run, tmp_path):
    from slimformer.workers.context import read_json, write_json

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    stage_marker(copy, "report").unlink()
    records = read_json(copy / "finalists.json")
    for r in records:  # make each int8 variant twice as fast as its fp32 model at the same accuracy
        r["latency_ms"] = r["variants"]["fp32"]["latency_ms"] = r["latency_onnx_ms"]
        r["variants"]["int8"].update(dev_accuracy=r["dev_accuracy"], latency_ms=r["latency_ms"] / 2)
    write_json(copy / "finalists.json", records)
    onnx = spec.model_copy(update={"latency": spec.latency.model_copy(update={"runtime": "onnxruntime"})})
    again = run_job(onnx, copy, Recorder(), use_ray=False)
    points = again["export"]["pareto_points"]
    assert {"variant": "int8", "hash": again["export"]["best"]} in points
    assert all(p["variant"] == "int8" for p in points)  # each fp32 is beaten by its own int8
    assert all(f["pareto_variants"] == ["int8"] for f in again["finalists"] if f["pareto"])


def test_a_budget_only_the_minimal_vocabulary_meets_fails_in_prepare(spec, finished_run, tmp_path):
    """Submission counts the fewest rows any trimmed vocabulary keeps; prepare knows the job's own: it refuses."""
    from slimformer.contracts.spec import LatencyShape
    from slimformer.errors import InfeasibleBudgetError
    from slimformer.search_space import SearchSpace
    from slimformer.service.validation import smallest_costs
    from slimformer.supernet.vocab import minimal_vocab_size
    from slimformer.workers.context import read_json

    run_dir, _, _ = finished_run
    space = SearchSpace.from_dict(read_json(run_dir / "space.json"))
    at_submission = smallest_costs(space.teacher, LatencyShape(), student_vocab=minimal_vocab_size(spec.teacher))
    exact = smallest_costs(space.teacher, LatencyShape(), student_vocab=space.student_vocab)
    assert at_submission["params_m"] < exact["params_m"]
    between = (at_submission["params_m"] + exact["params_m"]) / 2
    tight = spec.model_copy(update={"budgets": spec.budgets.model_copy(update={"params_m": between})})
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in STAGE_NAMES:
        stage_marker(copy, name).unlink()
    recorder = Recorder()
    with pytest.raises(InfeasibleBudgetError, match=r"params_m budget .* kept tokens") as err:
        run_job(tight, copy, recorder, use_ray=False, cache_dir=tmp_path / "cache")
    assert err.value.smallest["params_m"] == pytest.approx(exact["params_m"])
    assert recorder.started == ["prepare"]
