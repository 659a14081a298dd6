"""The adding problem (Hochreiter & Schmidhuber 1997), the paper's "Add" task."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["AddingTask"]


class AddingTask(Dataset):
    """Sequences of length T with two channels: channel 0 holds values drawn from U(0, 1),
    channel 1 holds two markers (one in the first half, one in the second half). The target is
    the sum of the two marked values, a float32 scalar.

    Always answering 1.0 (the mean of the sum) scores MSE = Var(U1 + U2) = 1/6 ≈ 0.167: the
    trivial baseline, :attr:`BASELINE_MSE`. Samples are generated once, deterministically from
    ``seed``. Items: ``x`` (T, 2) float32, ``y`` () float32.
    """

    BASELINE_MSE = 1.0 / 6.0
    num_classes = None
    input_size = 2

    def __init__(self, seq_len: int = 200, num_samples: int = 10_000, seed: int = 0) -> None:
        if not isinstance(seq_len, int) or seq_len < 2:
            raise ValueError(f"seq_len must be an int >= 2, got {seq_len!r}")
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        self.seq_len = seq_len
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        values = torch.rand(num_samples, seq_len, generator=generator)
        half = seq_len // 2
        first = torch.randint(0, half, (num_samples,), generator=generator)
        second = torch.randint(half, seq_len, (num_samples,), generator=generator)
        markers = torch.zeros(num_samples, seq_len)
        rows = torch.arange(num_samples)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        self.inputs = torch.stack((values, markers), dim=-1)
        self.targets = (values * markers).sum(dim=1)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]
