"""The shared AdamW: fused on the CPU, the same updates as PyTorch's default AdamW."""

from __future__ import annotations

import torch

from slimformer.supernet.optim import adamw


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Flatten(), torch.nn.Linear(24, 3))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 50, (4, 3), generator=gen)
        loss = model(ids).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_on_the_cpu_it_is_fused_and_updates_as_the_default_adamw() -> None:
    fused, plain = _model(0), _model(0)
    opt = adamw(fused.parameters(), lr=1e-2, weight_decay=0.1)
    assert opt.defaults["fused"] is True
    _train(fused, opt)
    _train(plain, torch.optim.AdamW(plain.parameters(), lr=1e-2, weight_decay=0.1))
    moved = False
    for a, b, start in zip(fused.parameters(), plain.parameters(), _model(0).parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        moved |= not torch.equal(a, start)
    assert moved


def test_param_groups_keep_their_own_weight_decay() -> None:
    model = _model(0)
    opt = adamw([{"params": [model[0].weight], "weight_decay": 0.0}, {"params": list(model[2].parameters())}],
                lr=1e-2, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.5]
    assert all(g["fused"] for g in opt.param_groups)


def test_complex_parameters_get_the_default_adamw_that_can_step_them() -> None:
    p = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    opt = adamw([p], lr=1e-2)
    assert not opt.defaults["fused"]
    p.grad = torch.ones_like(p)
    opt.step()
