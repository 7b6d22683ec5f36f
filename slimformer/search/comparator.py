"""CTNAS-style architecture comparator: a small network that says P(A beats B) from two encodings.

Predicting a proxy score exactly is harder than telling which of two candidates is better, and
only the order matters for choosing what to score next. The comparator is trained on ordered
pairs of already-scored candidates and ranks a large pool of cheap-to-sample candidates, so that
the (expensive) supernet proxy scores only the promising ones.

Model: f(A, B) = sigmoid(u(a) - u(b) + g(a, b) - g(b, a)), with a, b the one-hot encodings,
u a per-architecture utility MLP and g a pair MLP on [a, b, a - b]. The form is exactly
antisymmetric - f(A, B) = 1 - f(B, A) and f(A, A) = 1/2 - so the two orders of a pair can never
disagree; u gives a transitive backbone (it learns from few pairs), g lets the comparison
depend on the pair as in CTNAS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from slimformer.search_space import Arch, SearchSpace

Item = Any  # an Arch (encoded with the comparator's `encode`) or an already-encoded vector


class Comparator(nn.Module):
    """P(A beats B) over fixed-length architecture encodings ("beats" = lower proxy score).

    Args:
        encoding_size: length of the encodings (`SearchSpace.encoding_size()`).
        hidden: width of the utility and pair MLPs.
        seed: seeds the initial weights and the pair sampling in `fit`.
        encode: Arch -> encoding, used when `fit` / `rank` get architectures (e.g. `space.encode`).
    """

    def __init__(
        self,
        encoding_size: int,
        hidden: int = 64,
        seed: int = 0,
        encode: Callable[[Arch], Sequence[float]] | None = None,
    ):
        super().__init__()
        self.encoding_size = encoding_size
        self.hidden = hidden
        self.seed = seed
        self.encode = encode
        with torch.random.fork_rng():  # seeded init without touching the caller's global RNG
            torch.manual_seed(seed)
            self.utility = nn.Sequential(nn.Linear(encoding_size, hidden), nn.GELU(), nn.Linear(hidden, 1))
            self.pair = nn.Sequential(nn.Linear(3 * encoding_size, hidden), nn.GELU(), nn.Linear(hidden, 1))

    @classmethod
    def for_space(cls, space: SearchSpace, hidden: int = 64, seed: int = 0) -> Comparator:
        """A comparator over `space.encode` encodings."""
        return cls(space.encoding_size(), hidden=hidden, seed=seed, encode=space.encode)

    # --- model ---------------------------------------------------------------------------------

    def _pair_term(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        both = self.pair(torch.cat([torch.cat([a, b, a - b], -1), torch.cat([b, a, b - a], -1)]))  # one pass
        n = a.shape[0]
        return (both[:n] - both[n:]).squeeze(-1)

    def logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logit of P(A beats B) for batches a, b of shape [n, encoding_size]; antisymmetric in (a, b)."""
        return (self.utility(a) - self.utility(b)).squeeze(-1) + self._pair_term(a, b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(a, b))

    def _tensor(self, items: Sequence[Item]) -> torch.Tensor:
        rows = []
        for item in items:
            if isinstance(item, Arch):
                if self.encode is None:
                    raise ValueError("this comparator has no `encode`; pass encodings or build it with for_space()")
                rows.append(list(self.encode(item)))
            else:
                rows.append(list(item))
        x = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), -1)
        if x.shape[1] != self.encoding_size:
            raise ValueError(f"encodings have length {x.shape[1]}, expected {self.encoding_size}")
        return x

    # --- training ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Re-initialise the weights from the seed (a refit then depends only on its data)."""
        fresh = Comparator(self.encoding_size, self.hidden, self.seed, self.encode)
        self.load_state_dict(fresh.state_dict())

    def fit(
        self,
        scored: Sequence[tuple[Item, float]],
        steps: int = 300,
        lr: float = 1e-2,
        weight_decay: float = 1e-2,
        max_pairs: int = 512,
        reset: bool = True,
    ) -> float:
        """Train on all ordered pairs of scored candidates with binary cross-entropy.

        The label of (A, B) is 1 when A's score is lower (better) than B's; pairs with equal scores
        carry no order and are left out. Full batch while there are at most `max_pairs` ordered
        pairs, otherwise a seeded random subset of that size per step (cheaper, and the noise
        helps generalise). Weight decay matters: with a few dozen scored candidates over a
        one-hot encoding an unregularised comparator memorises its pairs (train accuracy 1.0,
        held-out ~0.72 on the tiny space; 1e-2 gives ~0.87-0.91).

        Args:
            scored: (architecture or encoding, proxy score) for candidates already scored.
            steps: Adam steps.
            reset: start from the seeded initial weights (so equal data gives equal models).

        Returns:
            The final training loss (0.0 when there is no ordered pair to learn from).
        """
        if reset:
            self.reset()
        if len(scored) < 2:
            return 0.0
        x = self._tensor([item for item, _ in scored])
        y = torch.tensor([float(s) for _, s in scored])
        pairs = [(i, j) for i, j in itertools.permutations(range(len(scored)), 2) if y[i] != y[j]]
        if not pairs:
            return 0.0
        idx = torch.tensor(pairs)
        labels = (y[idx[:, 0]] < y[idx[:, 1]]).float()
        gen = torch.Generator().manual_seed(self.seed)
        adam = _Adam(list(self.parameters()), lr=lr, weight_decay=weight_decay)
        self.train()
        loss = torch.tensor(0.0)
        # Matrices this small gain nothing from more threads, and on a busy machine OpenMP threads
        # spinning against other processes made a fit ~50x slower.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            loss = self._fit_steps(x, idx, labels, gen, adam, steps, max_pairs)
        finally:
            torch.set_num_threads(threads)
        self.eval()
        return float(loss.detach())

    def _fit_steps(self, x, idx, labels, gen, adam, steps: int, max_pairs: int) -> torch.Tensor:
        loss = torch.tensor(0.0)
        for _ in range(steps):
            pick = torch.randint(0, len(idx), (max_pairs,), generator=gen) if len(idx) > max_pairs else slice(None)
            i, j = idx[pick, 0], idx[pick, 1]
            utility = self.utility(x).squeeze(-1)  # once per architecture, not once per pair
            logit = utility[i] - utility[j] + self._pair_term(x[i], x[j])
            loss = nn.functional.binary_cross_entropy_with_logits(logit, labels[pick])
            adam.zero_grad()
            loss.backward()
            adam.step()
        return loss

    # --- use -----------------------------------------------------------------------------------

    @torch.no_grad()
    def win_probability(self, items: Sequence[Item], against: Sequence[Item]) -> torch.Tensor:
        """Matrix [len(items), len(against)] of P(item beats other)."""
        a, b = self._tensor(items), self._tensor(against)
        n, m = len(a), len(b)
        return self(a.repeat_interleave(m, 0), b.repeat(n, 1)).reshape(n, m)

    @torch.no_grad()
    def rank(
        self, pool: Sequence[Item], baseline: Item, references: Sequence[Item] = ()
    ) -> list[tuple[int, float]]:
        """Order `pool` by how likely each candidate beats the baseline, best first.

        Args:
            pool: candidates to rank.
            baseline: the current best scored candidate (CTNAS' curriculum baseline).
            references: optional further scored candidates; when given, a candidate's rank score
                is the mean of P(beats baseline) and its mean win probability against them, which
                separates candidates that all look far worse (or better) than the baseline.

        Returns:
            [(index into pool, rank score)], highest score first (ties: lower index first).
        """
        if not pool:
            return []
        scores = self.win_probability(pool, [baseline])[:, 0]
        if references:
            scores = 0.5 * scores + 0.5 * self.win_probability(pool, references).mean(dim=1)
        order = sorted(range(len(pool)), key=lambda i: (-float(scores[i]), i))
        return [(i, float(scores[i])) for i in order]


class _Adam:
    """Adam with L2 weight decay (as torch.optim.Adam), written out.

    Why not torch.optim: constructing any torch optimizer imports torch._dynamo, which took 5-9 s
    on the shared CPU machine - longer than a whole comparator fit - for no benefit here.
    """

    def __init__(self, params: list[nn.Parameter], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            g = p.grad.add(p, alpha=self.wd) if self.wd else p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


def pairwise_accuracy(comparator: Comparator, held_out: Sequence[tuple[Item, float]]) -> float:
    """Fraction of unordered pairs with different scores that the comparator orders correctly.

    Args:
        held_out: (architecture or encoding, score) pairs not used in training.

    Returns:
        Accuracy in [0, 1] (1.0 when no pair has different scores).
    """
    items = [item for item, _ in held_out]
    scores = [float(s) for _, s in held_out]
    if len(items) < 2:
        return 1.0
    probs = comparator.win_probability(items, items)
    right = total = 0
    for i, j in itertools.combinations(range(len(items)), 2):
        if scores[i] == scores[j]:
            continue
        total += 1
        right += (float(probs[i, j]) > 0.5) == (scores[i] < scores[j])
    return right / total if total else 1.0
