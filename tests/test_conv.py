"""Convolutional LTC layers and ConvSNN: reference equations, gradients, protocol, engines, memory."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from fptt.memory import per_update
from fptt.models import REFERENCE_DVS_CONV, ConvNetworkState, ConvSNN
from fptt.models.state import detach_state, state_tensors
from fptt.neurons import NeuronState
from fptt.neurons.conv import ConvLTC, ConvSpec, parse_conv_spec
from fptt.neurons.functional import ConvLTCParameters, conv_ltc_step
from fptt.neurons.surrogate import get_surrogate
from fptt.optim import FPTT
from fptt.training.engine import train_epoch


def smooth_spike(v: torch.Tensor) -> torch.Tensor:
    """A differentiable stand-in for H(v), so that finite differences measure what autograd computes."""
    return torch.sigmoid(4.0 * v)


def literal_conv(x, weight, bias):
    """'Same' 2-D cross-correlation written as explicit sums: x (B, Ci, H, W), weight (Co, Ci, k, k)."""
    batch, cin, height, width = x.shape
    cout, _, k, _ = weight.shape
    pad = k // 2
    out = torch.zeros(batch, cout, height, width, dtype=x.dtype)
    for b in range(batch):
        for o in range(cout):
            for r in range(height):
                for c in range(width):
                    total = float(bias[o])
                    for i in range(cin):
                        for dr in range(k):
                            for dc in range(k):
                                rr, cc = r + dr - pad, c + dc - pad
                                if 0 <= rr < height and 0 <= cc < width:
                                    total += float(weight[o, i, dr, dc]) * float(x[b, i, rr, cc])
                    out[b, o, r, c] = total
    return out


def reference_conv_ltc(d, u, b, s, params, b0, beta, reset):
    """SPEC §2 LTC update with convolutional gates, elementwise from the literal convolution."""
    def gate_in(own):
        return d + own if params.gate_input == "sum" else torch.cat((d, own), dim=1)
    alpha = torch.sigmoid(literal_conv(gate_in(u), params.membrane_weight, params.membrane_bias))
    rho = torch.sigmoid(literal_conv(gate_in(b), params.adaptation_weight, params.adaptation_bias))
    b_new = rho * b + (1 - rho) * s
    theta = b0 + beta * b_new
    u_new = u + alpha * (d - u)
    s_new = (u_new - theta > 0).to(d.dtype)
    u_new = u_new * (1 - s_new) if reset == "zero" else u_new - theta * s_new
    return u_new, b_new, s_new


def random_conv_case(gate_input: str, seed: int, channels: int = 2, side: int = 4):
    generator = torch.Generator().manual_seed(seed)
    gate_channels = channels * (2 if gate_input == "concat" else 1)

    def rand(*shape, scale=1.0):
        return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale

    params = ConvLTCParameters(rand(channels, gate_channels, 3, 3), rand(channels, scale=0.5),
                               rand(channels, gate_channels, 3, 3), rand(channels, scale=0.5), gate_input, 1)
    shape = (2, channels, side, side)
    d = rand(*shape, scale=1.5)
    state = NeuronState(torch.rand(*shape, generator=generator, dtype=torch.float64),
                        torch.rand(*shape, generator=generator, dtype=torch.float64) * 0.3,
                        (torch.rand(*shape, generator=generator, dtype=torch.float64) > 0.7).double())
    return d, state, params


@pytest.mark.parametrize("gate_input", ["sum", "concat"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_conv_ltc_step_matches_the_literal_equations(gate_input, reset):
    d, state, params = random_conv_case(gate_input, seed=3)
    spikes, new = conv_ltc_step(d, state, params, get_surrogate("multi_gaussian"), baseline_threshold=0.3,
                                adaptation_strength=1.8, reset=reset)
    u, b, s = reference_conv_ltc(d, state.membrane, state.adaptation, state.spikes, params, 0.3, 1.8, reset)
    assert 0 < float(s.mean()) < 1  # the case has spiking and silent neurons
    torch.testing.assert_close(new.spikes, s, rtol=0, atol=0)
    torch.testing.assert_close(spikes, s, rtol=0, atol=0)
    torch.testing.assert_close(new.membrane, u, rtol=0, atol=1e-12)
    torch.testing.assert_close(new.adaptation, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gate_input", ["sum", "concat"])
def test_conv_ltc_step_gradients_match_finite_differences(gate_input):
    d, state, params = random_conv_case(gate_input, seed=5, side=3)
    inputs = [d, state.membrane, state.adaptation, state.spikes, params.membrane_weight, params.membrane_bias,
              params.adaptation_weight, params.adaptation_bias]
    inputs = [tensor.clone().requires_grad_(True) for tensor in inputs]

    def step(d, u, b, s, wm, cm, wa, ca):
        _, new = conv_ltc_step(d, NeuronState(u, b, s), ConvLTCParameters(wm, cm, wa, ca, gate_input, 1),
                               smooth_spike, baseline_threshold=0.2, adaptation_strength=1.8)
        return new.membrane, new.adaptation, new.spikes

    assert torch.autograd.gradcheck(step, inputs, eps=1e-6, atol=1e-6)


def tiny_model(**options) -> ConvSNN:
    torch.manual_seed(0)
    return ConvSNN((2, 6, 6), ["3c3"], [4], 3, **options).double()


def test_conv_snn_gradients_over_steps_match_finite_differences():
    model = tiny_model(norm="layer")
    for module in model.modules():
        if hasattr(module, "spike_fn"):
            module.spike_fn = smooth_spike
    names = [name for name, _ in model.named_parameters()]
    values = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    torch.manual_seed(1)
    x = torch.rand(2, 3, 72, dtype=torch.float64, requires_grad=True)
    state = model.init_state(2)

    def unrolled(x, *parameters):
        return functional_call(model, dict(zip(names, parameters)), (x,), {"state": state})

    assert torch.autograd.gradcheck(unrolled, [x, *values], eps=1e-6, atol=1e-5)


def test_conv_snn_shapes_flat_and_map_inputs_agree():
    model = ConvSNN((2, 8, 8), ["4c3", "6c3p1"], [5, 7], 3)
    assert model.input_size == 128 and model.conv_output_size == 6 * 4 * 4
    state = model.init_state(2)
    assert [tuple(s.membrane.shape) for s in state.conv] == [(2, 4, 4, 4), (2, 6, 4, 4)]
    assert [tuple(s.membrane.shape) for s in state.dense] == [(2, 5), (2, 7)]
    x = torch.rand(2, 128)
    flat, flat_state = model.step(x, state)
    mapped, mapped_state = model.step(x.reshape(2, 2, 8, 8), state)
    assert flat.shape == (2, 3)
    torch.testing.assert_close(flat, mapped)
    assert all(torch.equal(a, b) for a, b in zip(state_tensors(flat_state), state_tensors(mapped_state)))
    spikes = torch.cat([t.spikes.flatten() for t in (*flat_state.conv, *flat_state.dense)])
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert len(model.firing_rates(flat_state)) == 4
    assert [c.shape for c in model.spike_counts(flat_state)] == [torch.Size([2])] * 4
    sequence = model(torch.rand(2, 5, 128))
    assert sequence.shape == (2, 5, 3)


def test_reference_architecture_has_the_logged_parameter_count():
    # the reference run log: 14,116,051 parameters with batch norms (6 C per conv layer), a
    # non-recurrent 512-LTC layer and a per-output tau; ours has neither batch norm nor tau_m_o
    model = ConvSNN((2, 128, 128), REFERENCE_DVS_CONV, [512], 11, recurrent=False, baseline_threshold=0.5)
    ours = sum(p.numel() for p in model.parameters())
    batch_norms = 6 * sum(parse_conv_spec(spec).channels for spec in REFERENCE_DVS_CONV)
    assert ours + batch_norms + 11 == 14_116_051
    assert model.conv_output_size == 512 * 2 * 2


def test_state_detach_cuts_the_graph_between_windows():
    model = tiny_model()
    x = torch.rand(2, 72, dtype=torch.float64)
    state = model.init_state(2)
    output, state = model.step(x, state)
    output.sum().backward()  # frees the first step's graph
    detached = detach_state(state)
    assert isinstance(detached, ConvNetworkState)
    assert all(not t.requires_grad for t in state_tensors(detached))
    output, _ = model.step(x, detached)
    output.sum().backward()  # would fail ("backward through the graph a second time") if not detached
    with pytest.raises(RuntimeError):
        model.step(x, state)[0].sum().backward()


@pytest.mark.parametrize("method", ["fptt", "bptt", "tbptt", "online"])
def test_every_engine_trains_a_conv_network_on_one_batch(method):
    torch.manual_seed(0)
    model = ConvSNN((2, 6, 6), ["3c3"], [4], 3)
    x = (torch.rand(4, 6, 72) < 0.3).float()
    y = torch.tensor([0, 1, 2, 1])
    inner = torch.optim.Adam(model.parameters(), lr=1e-2)
    optimizer = FPTT(inner, alpha=0.1) if method == "fptt" else inner
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_epoch(model, [(x, y)], optimizer, method=method, k=3 if method in ("fptt", "tbptt") else None)
    assert metrics.updates == {"fptt": 2, "tbptt": 2, "online": 6, "bptt": 1}[method]
    assert math.isfinite(metrics.loss)
    changed = [not torch.equal(a, p) for a, p in zip(before, model.parameters())]
    assert sum(changed) >= len(changed) - 1  # every layer learns (the last dense bias may see no spikes)


def _saved_bytes(method: str, frames: int, k=None) -> int:
    torch.manual_seed(0)
    model = ConvSNN((2, 6, 6), ["3c3"], [4], 3)
    x = (torch.rand(2, frames, 72) < 0.3).float()
    y = torch.tensor([0, 2])
    inner = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer = FPTT(inner) if method == "fptt" else inner
    with per_update(optimizer) as meter:
        train_epoch(model, [(x, y)], optimizer, method=method, k=k)
    return meter.peak


def test_fptt_saved_memory_per_update_is_constant_in_frames_and_bptt_grows_linearly():
    frames = (10, 30, 90)
    fptt = [_saved_bytes("fptt", n, k=1) for n in frames]
    fptt_window = [_saved_bytes("fptt", n, k=5) for n in frames]
    bptt = [_saved_bytes("bptt", n) for n in frames]
    assert fptt[0] > 0 and fptt[0] == fptt[1] == fptt[2]
    assert fptt_window[0] == fptt_window[1] == fptt_window[2] > fptt[0]
    per_frame = (bptt[2] - bptt[1]) / 60
    assert per_frame > 0 and (bptt[1] - bptt[0]) / 20 == pytest.approx(per_frame, rel=0.01)
    assert bptt[2] > 50 * fptt[2]


@pytest.mark.parametrize("text, expected", [("64c7", ConvSpec(64, 7, 2)), ("32c3p1", ConvSpec(32, 3, 1)),
                                            ("8c5p4", ConvSpec(8, 5, 4))])
def test_conv_specs_parse(text, expected):
    assert parse_conv_spec(text) == expected


@pytest.mark.parametrize("text", ["64", "c3", "64c4", "0c3", "64c3p0", "64x3"])
def test_bad_conv_specs_are_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match="conv layer"):
        parse_conv_spec(text)


def test_conv_snn_refuses_bad_shapes_and_inputs():
    with pytest.raises(ValueError, match="input_shape"):
        ConvSNN((2, 8), ["4c3"], [4], 3)
    with pytest.raises(ValueError, match="at least one conv layer"):
        ConvSNN((2, 8, 8), [], [4], 3)
    with pytest.raises(ValueError, match="smaller than its pooling"):
        ConvSNN((2, 2, 2), ["4c3", "4c3"], [4], 3)
    model = ConvSNN((2, 8, 8), ["4c3"], [4], 3)
    state = model.init_state(2)
    with pytest.raises(ValueError, match=r"\(batch, 128\)"):
        model.check_step(torch.rand(2, 100), state)
    with pytest.raises(ValueError, match="floating-point"):
        model.check_step(torch.ones(2, 128, dtype=torch.int64), state)
    with pytest.raises(ValueError, match="batch size"):
        model.check_step(torch.rand(3, 128), state)
    with pytest.raises(ValueError, match="gate_input"):
        ConvLTC(2, "4c3", (8, 8), gate_input="product")


def test_wide_frames_are_read_time_major_in_bounded_blocks():
    from fptt.training.batches import _BLOCK_ELEMENTS, StepInputs

    x = torch.rand(4, 50, 2 * 128 * 128)  # a batch of full-resolution DVS frames
    inputs = StepInputs(x, torch.device("cpu"), torch.float32)
    assert inputs.block_steps * 4 * x.shape[2] <= _BLOCK_ELEMENTS and inputs.block_steps < 50
    for t in (0, 1, inputs.block_steps, 49):
        assert torch.equal(inputs[t], x[:, t])
        assert inputs.block.shape[0] <= inputs.block_steps


def _conv_ddp_setup():
    torch.manual_seed(0)
    model = ConvSNN((2, 6, 6), ["3c3"], [4], 3, norm="layer", initial_membrane="zero").double()
    generator = torch.Generator().manual_seed(4)
    x = (torch.rand(4, 5, 72, generator=generator) < 0.3).double()
    y = torch.randint(0, 3, (4,), generator=generator)
    return model, FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), alpha=0.2), x, y


def _conv_ddp_worker(rank: int, port: int, out_dir: str) -> None:
    import datetime
    import os

    import torch.distributed as dist

    from fptt.training.distributed import DistributedModel
    from tests.test_distributed import _snapshot

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        model, optimizer, x, y = _conv_ddp_setup()
        train_epoch(DistributedModel(model), [(x[2 * rank:2 * rank + 2], y[2 * rank:2 * rank + 2])], optimizer,
                    method="fptt", k=2)
        torch.save(_snapshot(model, optimizer), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ddp_ranks_train_a_conv_network_as_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    from tests.test_distributed import _free_port, _snapshot

    mp.start_processes(_conv_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    model, optimizer, x, y = _conv_ddp_setup()
    train_epoch(model, [(x, y)], optimizer, method="fptt", k=2)
    single = _snapshot(model, optimizer)
    for key in ("params", "averages", "lambdas"):
        for a, b, c in zip(ranks[0][key], ranks[1][key], single[key]):
            assert torch.equal(a, b), f"{key} differ across ranks"
            torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-11)


def test_recorded_activity_of_a_conv_network_matches_its_steps():
    from fptt.run.plots import record_activity

    torch.manual_seed(0)
    model = ConvSNN((2, 6, 6), ["3c3"], [4], 3)
    x = (torch.rand(5, 72) < 0.5).float() * 3
    torch.manual_seed(1)
    activity = record_activity(model, x)
    assert [tuple(s.shape) for s in activity["spikes"]] == [(5, 27), (5, 4)]
    conv_rates = activity["membrane_rate"][0]
    assert conv_rates.shape == (5, 27) and bool(((conv_rates > 0) & (conv_rates < 1)).all())
    assert activity["membrane_rate"][1].shape == (5, 4)
    torch.manual_seed(1)
    state = model.init_state(1)
    for t in range(5):
        _, state = model.step(x[t:t + 1], state)
        assert torch.equal(state.conv[0].spikes[0].flatten(), activity["spikes"][0][t])
        assert torch.equal(state.dense[0].spikes[0], activity["spikes"][1][t])
