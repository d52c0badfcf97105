"""The final model as the mean of the last rounds' weights (``final-average``): numbers, not shapes."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord

from federated.server_app import average_arrays


def test_average_of_rounds_is_elementwise_and_keeps_integer_buffers() -> None:
    rounds = [ArrayRecord({"w": torch.full((2, 3), float(i)), "n": torch.tensor([i], dtype=torch.long)}) for i in (1, 2, 6)]
    avg = average_arrays(rounds).to_torch_state_dict()
    torch.testing.assert_close(avg["w"], torch.full((2, 3), 3.0))
    assert avg["n"].dtype == torch.long and int(avg["n"]) == 6  # a counter is the last round's, not a mean
