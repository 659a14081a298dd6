"""Smoke tests of the benchmarks (quick modes) and the deterministic saved-tensor figures.

No timing assertions: wall time on a shared machine is noise. What is asserted is structure
(every JSON field a reader needs) and the SavedTensorMeter bytes, which are exact.
"""
from __future__ import annotations

import json

import pytest
import torch

from fptt import FPTT, SpikingRNN, train_epoch
from fptt.bench import memory as memory_bench
from fptt.bench import peers as peers_bench
from fptt.bench import speed as speed_bench
from fptt.memory import SavedTensorMeter, per_update

MACHINE_FIELDS = ("cpu", "cpu_count", "torch", "torch_threads", "command", "device")


def _check_machine(payload: dict) -> None:
    for field in MACHINE_FIELDS:
        assert field in payload["machine"], field


def test_quick_memory_benchmark_writes_json_markdown_and_raw_figures(tmp_path):
    payload = memory_bench.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "memory_quick.json").read_text())
    assert (tmp_path / "memory_quick.md").read_text().startswith("# Memory")
    assert saved["benchmark"] == "memory" and saved["quick"] is True
    _check_machine(saved)
    assert saved["results"] and saved["targets"]["lines"]
    for row in saved["results"]:
        for field in ("method", "steps", "batch", "peak_bytes", "baseline_bytes", "delta_bytes",
                      "saved_tensor_peak_bytes", "updates", "seconds"):
            assert field in row, field
    # the deterministic figures: FPTT bytes per update constant in T, BPTT linear in T
    by_method = {}
    for row in payload["results"]:
        by_method.setdefault(row["method"], []).append((row["steps"], row["saved_tensor_peak_bytes"]))
    fptt = [b for _, b in sorted(by_method["fptt"])]
    assert fptt[0] > 0 and len(set(fptt)) == 1
    bptt = sorted(by_method["bptt"])
    slopes = [(b1 - b0) / (t1 - t0) for (t0, b0), (t1, b1) in zip(bptt, bptt[1:])]
    assert slopes[0] > 0
    assert all(s == pytest.approx(slopes[0], rel=0.01) for s in slopes)


def test_quick_speed_benchmark_writes_json_with_raw_timings_and_targets(tmp_path):
    speed_bench.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "speed_quick.json").read_text())
    assert (tmp_path / "speed_quick.md").read_text().startswith("# Speed")
    _check_machine(saved)
    raw = saved["step"]["raw_seconds_per_step"]
    assert set(raw) == {"fptt", "fptt_fused", "fptt_captured", "fptt_default", "floor", "naive", "nograd_forward"}
    assert all(len(values) == saved["step"]["rounds"] and min(values) > 0 for values in raw.values())
    assert set(saved["epoch"]["extrapolated_epoch_seconds"]) >= {"fptt_k1", "fptt_k1_fused", "bptt", "bptt_fused"}
    assert saved["scaling"]["hidden"] and saved["scaling"]["batch"]
    assert len(saved["targets"]) == 6 and all(line.startswith("TARGET") for line in saved["targets"])


def test_quick_peer_benchmark_compares_implementations_on_one_network(tmp_path):
    peers_bench.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "peers_quick.json").read_text())
    _check_machine(saved)
    assert (tmp_path / "peers_quick.md").read_text().startswith("# FPTT implementations side by side")
    names = set(saved["median_ms_per_step"])
    assert {"fptt", "fptt_fused", "reference_loop"} <= names
    assert ("spikingjelly" in names) == (peers_bench._spikingjelly() is not None)
    memory = saved["memory"]
    # the reference loop keeps the regularizer's graph on top of the network's: more saved bytes
    assert memory["fptt"]["saved_mib_per_update"] == memory["fptt_fused"]["saved_mib_per_update"]
    assert memory["fptt"]["saved_mib_per_update"] < memory["reference_loop"]["saved_mib_per_update"]


def _saved_per_update(method: str, steps: int, k=None) -> int:
    torch.manual_seed(0)
    model = SpikingRNN(1, 8, 3)
    inner = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer = FPTT(inner) if method == "fptt" else inner
    with per_update(optimizer) as meter:
        train_epoch(model, [(torch.rand(2, steps, 1), torch.randint(0, 3, (2,)))], optimizer, method=method, k=k)
    return meter.peak


def test_saved_bytes_per_update_are_constant_in_length_for_fptt_and_linear_for_bptt():
    lengths = (6, 12, 24)
    assert len({_saved_per_update("fptt", t, k=1) for t in lengths}) == 1
    assert len({_saved_per_update("fptt", t, k=3) for t in lengths}) == 1
    bptt = [_saved_per_update("bptt", t) for t in lengths]
    assert (bptt[2] - bptt[1]) / 12 == pytest.approx((bptt[1] - bptt[0]) / 6, rel=0.01)


def test_meter_skips_parameters_unless_asked():
    weight = torch.nn.Parameter(torch.randn(4, 4))
    x = torch.randn(3, 4, requires_grad=True)
    with SavedTensorMeter() as activations:
        (x.relu() @ weight.t()).sum()
    with SavedTensorMeter(count_parameters=True) as everything:
        (x.relu() @ weight.t()).sum()
    assert everything.peak - activations.peak == weight.numel() * weight.element_size()


def test_naive_fptt_baseline_matches_the_optimizer_wrapper():
    torch.manual_seed(1)
    x = torch.rand(5, 4, 1, dtype=torch.float64)  # (time, batch, 1)
    y = torch.randint(0, 10, (4,))
    fast = SpikingRNN(1, 8, 10).double()
    naive = SpikingRNN(1, 8, 10).double()
    naive.load_state_dict(fast.state_dict())
    torch.manual_seed(2)
    train_epoch(fast, [(x.transpose(0, 1), y)], FPTT(torch.optim.SGD(fast.parameters(), lr=0.05)), method="fptt", k=1)
    averages = {n: p.detach().clone() for n, p in naive.named_parameters()}
    lambdas = {n: torch.zeros_like(p) for n, p in naive.named_parameters()}
    torch.manual_seed(2)
    speed_bench.naive_fptt_sequence(naive, x, y, torch.optim.SGD(naive.parameters(), lr=0.05), averages, lambdas)
    for a, b in zip(fast.parameters(), naive.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_quick_throughput_benchmark_times_fptt_bptt_and_the_peers_in_one_run(tmp_path):
    from fptt.bench import throughput as throughput_bench

    throughput_bench.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "throughput_quick.json").read_text())
    _check_machine(saved)
    assert (tmp_path / "throughput_quick.md").read_text().startswith("# Throughput at the classification batch")
    names = set(saved["samples_per_second"])
    assert {"ltc_fptt_k1", "ltc_fptt_k1_exact", "ltc_bptt", "ltc_bptt_exact", "lif_bptt"} <= names
    try:
        import snntorch  # noqa: F401
        assert "snntorch_bptt" in names
    except ImportError:  # pragma: no cover - the interop extra is missing
        assert any("snntorch_bptt" in note for note in saved["notes"])
    assert all(len(v) == saved["shape"]["rounds"] and min(v) > 0 for v in saved["raw_seconds_per_batch"].values())
    assert saved["configs"]["ltc_fptt_k1"]["fused"] is True and saved["configs"]["ltc_fptt_k1_exact"]["fused"] is False
    assert saved["configs"]["ltc_bptt"]["method"] == "bptt" and saved["configs"]["ltc_fptt_k1"]["optimizer"] == "adamax"


def test_quick_compile_benchmark_measures_a_cold_and_a_warm_start_in_fresh_processes(tmp_path):
    from fptt.bench import compile as compile_bench

    compile_bench.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "compile_quick.json").read_text())
    _check_machine(saved)
    assert [run["cache"] for run in saved["runs"]] == ["cold", "warm", "warm"]
    assert all(run["compiled"] for run in saved["runs"])
    # the cold start compiles, the warm ones load: the first fused step is slower with an empty cache
    cold, warm = saved["compile_seconds"]["cold"], saved["compile_seconds"]["warm"]
    assert cold > warm > 0
    assert (tmp_path / "compile_quick.md").read_text().startswith("# Compile time and payback")
