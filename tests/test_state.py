"""Pinning tests for the state tree utilities (fptt.models.state)."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fptt import NetworkState
from fptt.models.state import detach_state, map_state, select_batch, state_tensors, state_to
from fptt.neurons import NeuronState


class Pair(NamedTuple):
    first: object
    second: object


def network_state(batch: int = 3, requires_grad: bool = False) -> NetworkState:
    generator = torch.Generator().manual_seed(0)

    def leaf(size):
        return torch.randn(batch, size, generator=generator).requires_grad_(requires_grad)

    layers = (NeuronState(leaf(4), leaf(4), leaf(4)), NeuronState(leaf(2), leaf(2), leaf(2)))
    return NetworkState(layers, leaf(5))


def test_map_state_preserves_named_tuple_types_and_nesting():
    state = network_state()
    doubled = map_state(lambda t: t * 2, state)
    assert type(doubled) is NetworkState
    assert type(doubled.layers) is tuple and len(doubled.layers) == 2
    assert all(type(layer) is NeuronState for layer in doubled.layers)
    assert doubled._fields == state._fields
    for new, old in zip(state_tensors(doubled), state_tensors(state)):
        assert torch.equal(new, old * 2)


def test_map_state_handles_lists_dicts_plain_tuples_none_and_scalars():
    t = torch.ones(2)
    state = {"a": [t, (t, None)], "b": Pair(t, {"c": t}), "n": 3, "name": "x", "flag": True}
    mapped = map_state(lambda x: x + 1, state)
    assert set(mapped) == set(state)
    assert type(mapped["a"]) is list and type(mapped["a"][1]) is tuple
    assert mapped["a"][1][1] is None
    assert type(mapped["b"]) is Pair and type(mapped["b"].second) is dict
    assert mapped["n"] == 3 and mapped["name"] == "x" and mapped["flag"] is True
    assert all(torch.equal(leaf, torch.full((2,), 2.0)) for leaf in state_tensors(mapped))
    assert torch.equal(t, torch.ones(2)), "the input state must not be modified"


def test_neuron_states_with_and_without_the_oscillation_go_through_every_utility():
    """A NeuronState's fourth field (BRF's v) is None for the other neurons: every utility keeps the
    None where it is and works on the tensors of both kinds of layer state side by side."""
    generator = torch.Generator().manual_seed(1)

    def leaf():
        return torch.randn(3, 2, generator=generator, requires_grad=True)

    three = NeuronState(leaf(), leaf(), leaf())
    four = NeuronState(leaf(), leaf(), leaf(), leaf())
    state = NetworkState((three, four), leaf())
    assert three.oscillation is None and len(list(state_tensors(state))) == 3 + 4 + 1
    doubled = map_state(lambda t: t * 2, state)
    assert type(doubled.layers[0]) is NeuronState and doubled.layers[0].oscillation is None
    torch.testing.assert_close(doubled.layers[1].oscillation, four.oscillation * 2)
    detached = detach_state(state)
    assert detached.layers[0].oscillation is None
    assert not any(t.requires_grad for t in state_tensors(detached))
    moved = state_to(state, dtype=torch.float64)
    assert moved.layers[0].oscillation is None and moved.layers[1].oscillation.dtype == torch.float64
    fresh = map_state(torch.zeros_like, detached)
    picked = select_batch(torch.tensor([True, False, True]), fresh, detached)
    assert picked.layers[0].oscillation is None
    for chosen, old in zip(state_tensors(picked), state_tensors(detached)):
        assert not chosen[0].any() and not chosen[2].any() and torch.equal(chosen[1], old[1])


def test_map_state_on_a_bare_tensor_applies_the_function():
    assert torch.equal(map_state(torch.neg, torch.ones(3)), -torch.ones(3))


@pytest.mark.parametrize("bad", [{1, 2}, object(), 3 + 2j])
def test_map_state_rejects_unknown_leaf_types_with_type_error(bad):
    with pytest.raises(TypeError, match="state"):
        map_state(lambda t: t, (torch.ones(1), bad))


def test_state_tensors_walks_depth_first_in_container_order():
    a, b, c, d = (torch.tensor([float(i)]) for i in range(4))
    state = Pair([a, (b, None)], {"x": c, "y": Pair(d, None)})
    assert [t.item() for t in state_tensors(state)] == [0.0, 1.0, 2.0, 3.0]
    assert list(state_tensors(None)) == []


def test_detach_state_cuts_the_graph_but_keeps_values_and_leaves_the_original_intact():
    weight = torch.tensor(2.0, requires_grad=True)
    state = map_state(lambda t: t * weight, network_state())
    assert all(t.grad_fn is not None for t in state_tensors(state))
    detached = detach_state(state)
    assert type(detached) is NetworkState
    for new, old in zip(state_tensors(detached), state_tensors(state)):
        assert not new.requires_grad and new.grad_fn is None
        assert torch.equal(new, old)
        assert new.data_ptr() == old.data_ptr()  # a view, no copy
    # the original graph is still usable
    sum(t.sum() for t in state_tensors(state)).backward()
    assert weight.grad is not None
    # and a loss built on the detached state does not reach the weight
    weight.grad = None
    loss = sum((t * 1.0).sum() for t in state_tensors(detached))
    assert not loss.requires_grad


def test_state_to_changes_the_dtype_of_floating_tensors_only():
    state = Pair(
        NeuronState(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.float16), torch.ones(2, 3)),
        {"steps": torch.arange(3), "mask": torch.tensor([True, False]), "none": None},
    )
    moved = state_to(state, dtype=torch.float64)
    assert type(moved) is Pair and type(moved.first) is NeuronState
    assert all(t.dtype == torch.float64 for t in state_tensors(moved.first))
    assert moved.second["steps"].dtype == torch.int64
    assert moved.second["mask"].dtype == torch.bool
    assert moved.second["none"] is None
    assert torch.equal(moved.first.adaptation, torch.ones(2, 3, dtype=torch.float64))


def test_state_to_without_arguments_keeps_dtypes_and_with_a_device_moves_every_tensor():
    state = Pair(torch.zeros(2, dtype=torch.float16), torch.arange(2))
    same = state_to(state)
    assert same.first.dtype == torch.float16 and same.second.dtype == torch.int64
    meta = state_to(state, device="meta")
    assert all(t.device.type == "meta" for t in state_tensors(meta))
    assert meta.first.dtype == torch.float16 and meta.second.dtype == torch.int64


def test_select_batch_takes_new_rows_where_the_mask_is_true_and_old_rows_elsewhere():
    old = network_state(batch=4)
    new = map_state(lambda t: t + 100.0, old)
    mask = torch.tensor([True, False, False, True])
    picked = select_batch(mask, new, old)
    assert type(picked) is NetworkState
    assert all(type(layer) is NeuronState for layer in picked.layers)
    for chosen, n, o in zip(state_tensors(picked), state_tensors(new), state_tensors(old)):
        assert chosen.shape == o.shape
        assert torch.equal(chosen[0], n[0]) and torch.equal(chosen[3], n[3])
        assert torch.equal(chosen[1], o[1]) and torch.equal(chosen[2], o[2])


def test_select_batch_broadcasts_the_mask_over_every_trailing_dimension():
    old = (torch.zeros(3), torch.zeros(3, 2, 4))
    new = (torch.ones(3), torch.ones(3, 2, 4))
    picked = select_batch(torch.tensor([False, True, False]), new, old)
    assert picked[0].tolist() == [0.0, 1.0, 0.0]
    assert picked[1].sum(dim=(1, 2)).tolist() == [0.0, 8.0, 0.0]


def test_select_batch_keeps_gradients_of_the_chosen_rows():
    weight = torch.tensor(3.0, requires_grad=True)
    old = (torch.zeros(2, 2),)
    new = (torch.ones(2, 2) * weight,)
    picked = select_batch(torch.tensor([True, False]), new, old)
    picked[0].sum().backward()
    assert weight.grad.item() == 2.0  # only the two entries of row 0 came from `new`


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 5), sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_select_batch_with_all_true_or_all_false_masks_returns_new_or_old(batch, sizes, seed):
    generator = torch.Generator().manual_seed(seed)
    old = [NeuronState(*(torch.randn(batch, size, generator=generator) for _ in range(3))) for size in sizes]
    new = map_state(lambda t: t * 2 + 1, old)
    for mask_value, expected in ((True, new), (False, old)):
        picked = select_batch(torch.full((batch,), mask_value), new, old)
        assert type(picked) is list and all(type(layer) is NeuronState for layer in picked)
        for a, b in zip(state_tensors(picked), state_tensors(expected)):
            assert torch.equal(a, b)
