"""Shared test helpers (pytest fixtures)."""

import pytest
import torch


@pytest.fixture
def random_batch():
    """random_batch(model, B=5) -> (inputs (B, S): random non-PAD token ids, puzzle_ids (B,): 0)."""
    def make(model, B=5):
        inputs = torch.randint(1, model.config.vocab_size, (B, model.config.seq_len))
        return inputs, torch.zeros(B, dtype=torch.long)
    return make
