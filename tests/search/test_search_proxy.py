"""ProxyEvaluator: block losses from random-weight block supernets, caching, persistence, few-shot routing."""

from __future__ import annotations

import random

import pytest
import torch

from slimformer.search.proxy import ProxyEvaluator
from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.distill import BlockTrainer, BlockTrainSettings, validation_loss
from slimformer.supernet.states import TeacherStates

TINY = space_for_teacher(
    TeacherFacts(hidden_size=64, num_layers=6, num_heads=4, intermediate_size=128, vocab_size=300, max_position=128)
)
SETTINGS = BlockTrainSettings(batch_size=8, val_batches=1)
REGIONS = ["all"] + [f"H{h}" for h in TINY.hidden_sizes]


def _states(n=24, seq=8, d=64, blocks=3) -> TeacherStates:
    """Random teacher states, each boundary a fixed smooth function of the previous one (as test_supernet)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (n, seq), generator=gen)
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[::3, seq // 2 :] = 0
    h = [torch.randn(n, seq, d, generator=gen).half()]
    mix = torch.randn(d, d, generator=gen) / d**0.5
    for _ in range(blocks):
        h.append(torch.tanh(h[-1].float() @ mix).half())
    return TeacherStates(ids, mask, torch.zeros_like(ids), h, num_val=8)


@pytest.fixture(scope="module")
def block_weights() -> dict[tuple[str, int], dict[str, torch.Tensor]]:
    """Different random weights for every (region, block), so routing to the wrong region shows."""
    out = {}
    with torch.random.fork_rng():
        for r, region in enumerate(REGIONS):
            for b in range(TINY.num_blocks):
                torch.manual_seed(100 * r + b)
                out[(region, b)] = BlockTrainer(TINY, b).state_dict()
    return out


@pytest.fixture(scope="module")
def states() -> TeacherStates:
    return _states()


class Loader:
    def __init__(self, weights):
        self.weights = weights
        self.calls: list[tuple[str, int]] = []

    def __call__(self, region: str, index: int):
        self.calls.append((region, index))
        return self.weights[(region, index)]


def test_scores_are_cached_per_block(block_weights, states):
    loader = Loader(block_weights)
    proxy = ProxyEvaluator(TINY, states, loader, SETTINGS)
    arch = TINY.sample(random.Random(0))
    first = proxy(arch)
    spent = proxy.evaluations
    assert spent == 2 * TINY.num_blocks  # the candidate's blocks plus the reference (largest) blocks
    assert proxy(arch) == first and proxy.evaluations == spent  # second call costs no evaluation
    assert proxy.hits >= TINY.num_blocks
    # A candidate sharing block 0 with the first (same H) only pays for its other blocks.
    other = type(arch)(arch.hidden, (arch.blocks[0], *TINY.sample(random.Random(1), hidden=arch.hidden).blocks[1:]))
    proxy(other)
    assert proxy.evaluations == spent + TINY.num_blocks - 1
    assert len(set(loader.calls)) == len(loader.calls)  # each block's weights loaded once


def test_largest_architecture_scores_one(block_weights, states):
    # Normalisation: every block is divided by the largest architecture's loss in that block.
    blocks = {r: [block_weights[(r, b)] for b in range(TINY.num_blocks)] for r in REGIONS}
    proxy = ProxyEvaluator.from_block_states(TINY, states, blocks, SETTINGS)
    assert proxy.score(TINY.largest()) == pytest.approx(1.0)
    assert proxy.block_scores(TINY.largest()) == pytest.approx([1.0] * TINY.num_blocks)
    assert proxy.score(TINY.smallest()) != pytest.approx(1.0)


def test_fewshot_routing_uses_the_region_of_the_arch_hidden_size(block_weights, states):
    arch = TINY.sample(random.Random(3), hidden=TINY.hidden_sizes[1])
    region = f"H{arch.hidden}"
    loader = Loader(block_weights)
    proxy = ProxyEvaluator(TINY, states, loader, SETTINGS, routing="fewshot")
    assert proxy.region_key(arch) == region
    losses = [proxy.block_loss(region, b, arch.blocks[b], arch.hidden) for b in range(TINY.num_blocks)]
    proxy.score(arch)
    assert {r for r, _ in loader.calls} == {region, f"H{TINY.max_hidden}"}  # candidate + reference region
    # The block loss is the region's own validation loss, not the one-shot supernet's.
    trainer = BlockTrainer(TINY, 1)
    trainer.load_state_dict(block_weights[(region, 1)])
    assert losses[1] == pytest.approx(validation_loss(trainer, states, arch.blocks[1], arch.hidden, SETTINGS))
    oneshot = ProxyEvaluator(TINY, states, Loader(block_weights), SETTINGS, routing="oneshot")
    assert oneshot.region_key(arch) == "all"
    assert oneshot.block_loss("all", 1, arch.blocks[1], arch.hidden) != pytest.approx(losses[1])
    assert proxy.score(arch, routing="oneshot") == pytest.approx(oneshot.score(arch))


def test_persisted_cache_is_reused_by_a_resumed_search(block_weights, states, tmp_path):
    path = tmp_path / "proxy.sqlite"
    arch = TINY.sample(random.Random(5))
    with ProxyEvaluator(TINY, states, Loader(block_weights), SETTINGS, cache_path=path, cache_tag="run1") as first:
        value = first(arch)
        assert first.evaluations > 0
    loader = Loader(block_weights)
    with ProxyEvaluator(TINY, states, loader, SETTINGS, cache_path=path, cache_tag="run1") as resumed:
        assert resumed(arch) == value
        assert resumed.evaluations == 0 and loader.calls == []  # no weights even loaded
    with ProxyEvaluator(TINY, states, Loader(block_weights), SETTINGS, cache_path=path, cache_tag="run2") as other:
        other(arch)
        assert other.evaluations > 0  # losses of other weights are never reused


def test_bad_routing_and_block_are_refused(block_weights, states):
    with pytest.raises(ValueError, match="routing"):
        ProxyEvaluator(TINY, states, Loader(block_weights), SETTINGS, routing="twoshot")
    proxy = ProxyEvaluator(TINY, states, Loader(block_weights), SETTINGS)
    with pytest.raises(ValueError, match="block_index"):
        proxy.block_loss("all", TINY.num_blocks, TINY.largest().blocks[0], TINY.max_hidden)
