"""The note reader starts from weights its config names, so the same corpus and config give the same reader."""

from __future__ import annotations

import torch

from workbench.train.pretrain_text import ReaderConfig, fresh_note_model


def test_the_starting_weights_follow_the_seed_not_the_global_state() -> None:
    a = fresh_note_model(ReaderConfig(seed=3))
    torch.rand(1000)  # whatever ran before must not matter
    b = fresh_note_model(ReaderConfig(seed=3))
    c = fresh_note_model(ReaderConfig(seed=4))
    pa, pb, pc = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)
