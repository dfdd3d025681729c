"""The rollout's pieces: the valid tokens of responses and the positions of left-padded rows."""

import torch

from e2h.generation.static_cache import left_padded_positions
from e2h.rl.rollout import response_mask


def test_response_mask_keeps_tokens_up_to_the_first_eos():
    responses = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 7, 2, 0], [5, 6, 7, 8, 9]])
    mask, stopped = response_mask(responses, eos_id=2)
    assert mask.int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert stopped.tolist() == [True, True, False]
    positions = left_padded_positions(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]]))
    assert positions.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 0]]
