"""Elastic supernet, extraction, block-wise distillation with checkpoints, few-shot regions."""

from __future__ import annotations

import random

import pytest
import torch

from slimformer.errors import CheckpointError
from slimformer.search_space import SearchSpace, TeacherFacts, count_params
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import assemble_supernet, fewshot_regions, region_of, warm_start_state
from slimformer.supernet.distill import BlockTrainSettings, Region, train_block
from slimformer.supernet.extract import extract
from slimformer.supernet.model import Supernet
from slimformer.supernet.states import TeacherStates

TINY = space_for_teacher(
    TeacherFacts(hidden_size=64, num_layers=6, num_heads=4, intermediate_size=128, vocab_size=300, max_position=128)
)


def _inputs(batch=3, seq=17, vocab=300):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 9:] = 0  # padding in one row, so masking paths are exercised
    return ids, mask


def _randomised(space: SearchSpace) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(space)
    with torch.no_grad():  # LayerNorm params start at 1/0; perturb them so slicing mistakes show
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def test_param_count_equals_extracted_numel_for_100_archs():
    net = _randomised(TINY)
    rng = random.Random(0)
    for _ in range(100):
        arch = TINY.sample(rng)
        assert extract(net, arch).num_params() == count_params(arch, TINY), arch.short()


def test_param_count_formula_on_the_real_teacher_space():
    space = space_for_teacher(TeacherFacts())
    net = Supernet(space)
    rng = random.Random(1)
    for _ in range(5):
        arch = space.sample(rng)
        assert extract(net, arch).num_params() == count_params(arch, space)


def test_supernet_and_extracted_subnet_agree():
    net = _randomised(TINY)
    ids, mask = _inputs()
    rng = random.Random(1)
    for _ in range(25):
        arch = TINY.sample(rng)
        sub = extract(net, arch)
        net.set_active(arch)
        with torch.no_grad():
            a = net(ids, mask, output_hidden_states=True)
            b = sub(ids, mask, output_hidden_states=True)
        assert torch.allclose(a["logits"], b["logits"], atol=1e-5), arch.short()
        for x, y in zip(a["hidden_states"], b["hidden_states"], strict=True):
            assert torch.allclose(x, y, atol=1e-5)


def test_extracted_subnet_owns_its_weights():
    net = _randomised(TINY)
    arch = TINY.largest()
    sub = extract(net, arch)
    before = net.embeddings.word_embeddings.detach().clone()
    with torch.no_grad():
        sub.embeddings.word_embeddings.weight.add_(1.0)
    assert torch.equal(net.embeddings.word_embeddings, before)


def _states(n=48, seq=12, d=64, blocks=3) -> TeacherStates:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (n, seq), generator=gen)
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[::3, seq // 2 :] = 0
    h = [torch.randn(n, seq, d, generator=gen).half()]
    mix = torch.randn(d, d, generator=gen) / d**0.5
    for _ in range(blocks):  # each boundary a fixed smooth function of the previous one
        h.append(torch.tanh(h[-1].float() @ mix).half())
    return TeacherStates(ids, mask, torch.zeros_like(ids), h, num_val=8)


def test_block_training_lowers_the_validation_loss():
    states = _states()
    settings = BlockTrainSettings(steps=30, batch_size=8, lr=3e-3, warmup_steps=3, checkpoint_every=10)
    result = train_block(TINY, 1, states, settings)
    assert result.steps == 30
    assert result.loss_end < result.loss_start * 0.9


def test_resumed_block_training_continues_from_its_checkpoint(tmp_path):
    states = _states()
    settings = BlockTrainSettings(steps=12, batch_size=8, lr=3e-3, warmup_steps=2, checkpoint_every=4)
    full = train_block(TINY, 0, states, settings, checkpoint=tmp_path / "full.pt")

    ckpt = tmp_path / "cut.pt"
    first = train_block(TINY, 0, states, settings, checkpoint=ckpt, stop_after=8)
    assert first.steps == 8
    saved = torch.load(ckpt, weights_only=False)
    assert saved["step"] == 8
    resumed = train_block(TINY, 0, states, settings, checkpoint=ckpt)
    assert resumed.steps == 12
    assert [s for s, _ in resumed.history] == list(range(1, 13))  # steps 1..8 from the checkpoint, not re-run
    for key, value in full.state.items():
        assert torch.allclose(value, resumed.state[key], atol=1e-6), key


def test_checkpoint_of_another_run_is_refused(tmp_path):
    states = _states()
    ckpt = tmp_path / "b.pt"
    settings = BlockTrainSettings(steps=4, batch_size=8, checkpoint_every=2)
    train_block(TINY, 0, states, settings, checkpoint=ckpt, stop_after=2)
    with pytest.raises(CheckpointError, match="settings"):
        train_block(TINY, 0, states, BlockTrainSettings(steps=4, batch_size=8, lr=1.0), checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="region"):
        train_block(TINY, 0, states, settings, checkpoint=ckpt, region=Region(hidden=32))


def test_few_shot_regions_route_every_arch_to_its_hidden_size():
    regions = fewshot_regions(TINY)
    assert [r.hidden for r in regions] == list(TINY.hidden_sizes)
    rng = random.Random(0)
    for _ in range(20):
        arch = TINY.sample(rng)
        assert region_of(arch, regions).hidden == arch.hidden
    with pytest.raises(ValueError, match="split decision"):
        fewshot_regions(TINY, "heads")


def test_region_training_only_samples_its_hidden_size():
    states = _states()
    settings = BlockTrainSettings(steps=3, batch_size=8, weight_decay=0.0)  # decay would touch all columns
    start = train_block(TINY, 2, states, BlockTrainSettings(steps=2, batch_size=8)).state
    result = train_block(TINY, 2, states, settings, init_state=start, region=Region(hidden=32))
    # Columns beyond H=32 of the output bridge get no gradient when only H=32 is trained.
    assert torch.equal(result.state["block.bridge_out.weight"][:, 32:], start["block.bridge_out.weight"][:, 32:])
    assert not torch.equal(result.state["block.bridge_out.weight"][:, :32], start["block.bridge_out.weight"][:, :32])


def test_warm_start_is_the_same_whatever_the_global_rng_did_before():
    """Ops the teacher has no weights for (SepConv) start from a seeded init, not the process's global RNG.

    A job resumed after a crash builds its blocks' warm starts in a fresh process, whose global
    stream is elsewhere: with an unseeded init its blocks, and so its front, came out different.
    """
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=128,
                     vocab_size=300, max_position_embeddings=128)
    torch.manual_seed(0)
    teacher = BertModel(cfg).eval()
    basis = torch.linalg.qr(torch.randn(64, 64))[0]
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    first = warm_start_state(TINY, 1, teacher, basis, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is left where it was
    torch.manual_seed(2)
    torch.randn(1000)
    again = warm_start_state(TINY, 1, teacher, basis, seed=3)
    assert any("conv" in k for k in first)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = warm_start_state(TINY, 1, teacher, basis, seed=4)
    assert any(not torch.equal(first[k], other[k]) for k in first if "conv" in k)


def test_warm_start_and_assembly_from_a_teacher():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=128,
                     vocab_size=300, max_position_embeddings=128)
    torch.manual_seed(0)
    teacher = BertModel(cfg).eval()
    basis = torch.linalg.qr(torch.randn(64, 64))[0]
    states = [warm_start_state(TINY, b, teacher, basis) for b in range(TINY.num_blocks)]
    head = torch.nn.Linear(64, 2)
    net = assemble_supernet(TINY, states, head)
    # The largest path's first FFN equals the teacher's FFN seen through the basis.
    ffn = net.blocks[0].slots[0].ops["ffn"]
    w1 = teacher.encoder.layer[0].intermediate.dense.weight
    assert torch.allclose(ffn.intermediate.weight.norm(), (w1 @ basis).norm(), rtol=1e-4)
    # The classifier folds the last bridge: W_c = W_t @ basis (up to H_max columns).
    assert torch.allclose(net.classifier.weight, head.weight @ basis, atol=1e-5)
    ids, mask = _inputs()
    arch = TINY.sample(random.Random(2))
    net.set_active(arch)
    with torch.no_grad():
        assert torch.allclose(net(ids, mask)["logits"], extract(net, arch)(ids, mask)["logits"], atol=1e-5)
