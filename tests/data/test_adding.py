import pytest
import torch

from fptt.data import AddingTask


def test_adding_task_targets_markers_determinism():
    task = AddingTask(seq_len=50, num_samples=200, seed=7)
    assert len(task) == 200 and task.input_size == 2 and task.seq_len == 50
    x, y = task[3]
    assert x.shape == (50, 2) and x.dtype == torch.float32 and y.dtype == torch.float32 and y.shape == ()
    values, markers = task.inputs[..., 0], task.inputs[..., 1]
    assert torch.all(markers.sum(dim=1) == 2)
    assert torch.all(markers[:, :25].sum(dim=1) == 1) and torch.all(markers[:, 25:].sum(dim=1) == 1)
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert torch.all((values >= 0) & (values < 1))
    torch.testing.assert_close(task.targets, (values * markers).sum(dim=1))
    again = AddingTask(seq_len=50, num_samples=200, seed=7)
    assert torch.equal(again.inputs, task.inputs) and torch.equal(again.targets, task.targets)
    assert not torch.equal(AddingTask(seq_len=50, num_samples=200, seed=8).inputs, task.inputs)


def test_lazy_adding_task_draws_fresh_deterministic_samples_in_constant_memory():
    task = AddingTask(seq_len=40, num_samples=10**9, seed=3, lazy=True)  # eagerly this would be 320 GB
    assert len(task) == 10**9 and not hasattr(task, "inputs")
    x, y = task[5]
    assert x.shape == (40, 2) and y.shape == () and x.dtype == y.dtype == torch.float32
    values, markers = x[:, 0], x[:, 1]
    assert markers[:20].sum() == 1 and markers[20:].sum() == 1
    torch.testing.assert_close(y, (values * markers).sum())
    again = AddingTask(seq_len=40, num_samples=10**9, seed=3, lazy=True)
    assert torch.equal(again[5][0], x) and torch.equal(task[-1][0], task[10**9 - 1][0])
    assert not torch.equal(task[6][0], x), "each index is a different sequence"
    assert not torch.equal(AddingTask(seq_len=40, num_samples=10, seed=4, lazy=True)[5][0], x)
    with pytest.raises(IndexError):
        task[10**9]
