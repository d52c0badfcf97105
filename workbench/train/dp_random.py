"""Where the randomness of differential privacy comes from: the OS, never a seed someone else can read.

DP-SGD's guarantee rests on the Poisson draws (which cases join a step) and the Gaussian noise being unknown to
the attacker. A generator seeded from the run's configured seed is not: whoever knows the config and every
record but one can replay training for both neighbouring datasets and match the release exactly (measured on
the earlier code: the right dataset named 20 times out of 20 at epsilon 1). So by default every DP release
draws from a generator seeded with 64 bits of OS entropy (``os.urandom``), made fresh per release and never
stored or logged.

``seed`` (``dp-seeded = true``) brings the replayable generator back for tests and debugging; a release made
that way is recorded with ``secure_randomness: false`` and everything that shows its epsilon says "not private:
seeded randomness".
"""

from __future__ import annotations

import os

import torch


def dp_generator(seed: int | None = None) -> torch.Generator:
    """A CPU generator for one DP release: OS entropy when ``seed`` is None (private), else ``seed`` (not)."""
    g = torch.Generator()
    g.manual_seed(int.from_bytes(os.urandom(8), "little") if seed is None else int(seed))
    return g


__all__ = ["dp_generator"]
