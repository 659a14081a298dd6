"""Training engines: FPTT, BPTT, truncated BPTT and naive online gradient (THEORY.md §3).

Every engine trains any model that speaks the stateful-model protocol (:mod:`fptt.models`) on
batches ``(x, y)`` with ``x`` of shape ``(batch, time, features)`` (batch first).

Loss at step t (THEORY.md §3.2). For a *terminal* target ``y`` (a class per sequence, or a regression
target known only at the end), every step predicts the final answer and is weighted by ``w_t``:

.. math:: \\ell_t = w_t \\, L(v_t, y), \\qquad
          w_t = \\tfrac{t+1}{T}\\ (\\text{"linear"}),\\ 1\\ (\\text{"uniform"}),\\ [t = T-1]\\ (\\text{"last"})

with ``L`` the cross-entropy (integer targets) or the squared error (float targets). With
``per_step_targets=True``, ``y`` has a time axis and ``ℓ_t = w_t L(v_t, y_t)``.

Methods, for a sequence of length T split into windows of ``k`` steps:

* ``"fptt"``: the state is detached at each window start; after each window the mean of the
  window's ℓ_t is back-propagated (through that window only) and the :class:`~fptt.optim.FPTT`
  optimizer adds its dynamic regularizer and steps. Memory O(k), T/k updates per sequence.
* ``"tbptt"``: the same windows with a plain optimizer (no regularizer).
* ``"online"``: ``"tbptt"`` with k = 1, the ablation showing what FPTT's regularizer buys.
* ``"bptt"``: the whole sequence is unrolled, the mean of all ℓ_t is back-propagated once, one
  optimizer step per sequence. Memory O(T).
* ``"eprop"`` / ``"ostl"``: no unrolling; eligibility traces follow the forward pass and each
  ℓ_t adds its forward-in-time gradient (:mod:`fptt.training.traces.learner`); every k steps (default
  1) the window's gradient is written into ``.grad`` and the plain optimizer steps. ALIF/LIF
  networks only. Memory O(n_in·n + n²) per layer, independent of T and k.

``loss_steps="window_end"`` keeps only the last step of each window in the loss (the authors'
adding-task setting with K update points); the default ``"every"`` uses all steps.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Iterable, Iterator, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from ..models.protocol import check_first_step, check_stateful_model
from ..optim import FPTT
from ..spec.rules import check_window
from ..spec.vocabulary import DECODINGS, FEEDBACKS, LOSS_STEPS, METHODS, TRACE_METHODS, WEIGHTINGS
from .batches import LossFn, StepInputs, loader_length, prepared_batches, progress_bar
from .metrics import Accumulator, EpochMetrics, firing_rate
from .window import WindowUpdate

__all__ = [
    "METHODS",
    "WEIGHTINGS",
    "EpochMetrics",
    "train_epoch",
    "evaluate",
    "loss_weights",
    "step_weight",
    "window_bounds",
    "iter_windows",
]

Method = Literal["fptt", "bptt", "tbptt", "online", "eprop", "ostl"]
Weighting = Literal["linear", "uniform", "last"]


def step_weight(t: int, seq_len: int, weighting: Weighting = "linear") -> float:
    """w_t of one step: ``"linear"`` (t+1)/T (the paper's), ``"uniform"`` 1, ``"last"`` [t = T-1].

    Computed on demand, so that nothing in the time loop grows with T."""
    if weighting == "linear":
        return (t + 1) / seq_len
    if weighting == "uniform":
        return 1.0
    if weighting == "last":
        return 1.0 if t == seq_len - 1 else 0.0
    raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")


def loss_weights(seq_len: int, weighting: Weighting = "linear") -> list[float]:
    """The list [w_0, ..., w_{T-1}] of :func:`step_weight` (for inspection and plots)."""
    return [step_weight(t, seq_len, weighting) for t in range(seq_len)]


def _window_length(seq_len: int, k: Optional[int], update_points: Optional[int]) -> int:
    check_window(k, update_points, seq_len)
    if update_points is not None:
        return math.ceil(seq_len / update_points)
    return 1 if k is None else k


def iter_windows(seq_len: int, k: Optional[int] = None, update_points: Optional[int] = None) -> Iterator[tuple[int, int]]:
    """Lazily yield the ``(start, stop)`` windows of :func:`window_bounds` (arguments checked at
    the call, before the first window)."""
    length = _window_length(seq_len, k, update_points)
    return ((start, min(start + length, seq_len)) for start in range(0, seq_len, length))


def window_bounds(seq_len: int, k: Optional[int] = None, update_points: Optional[int] = None) -> list[tuple[int, int]]:
    """Split ``range(seq_len)`` into windows of ``k`` steps, or into ``update_points`` windows of
    ``ceil(T / K)`` steps (the last may be shorter). Returns ``[(start, stop), ...]``."""
    return list(iter_windows(seq_len, k, update_points))


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _check_optimizer(method: str, optimizer: torch.optim.Optimizer) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "fptt" and not isinstance(optimizer, FPTT):
        raise TypeError("method='fptt' needs an FPTT optimizer: wrap yours, e.g. FPTT(torch.optim.Adam(...))")
    if method != "fptt" and isinstance(optimizer, FPTT):
        raise TypeError(f"method={method!r} trains without FPTT's regularizer: pass the plain inner optimizer")


def _method_windows(seq_len: int, method: str, k: Optional[int],
                    update_points: Optional[int]) -> Iterable[tuple[int, int]]:
    """The update windows of one sequence: the whole sequence for BPTT, single steps for online."""
    if method == "bptt":
        return ((0, seq_len),)
    return iter_windows(seq_len, 1 if method == "online" else k, update_points)


def _window_has_loss(seq_len: int, weighting: Weighting, start: int, stop: int, loss_steps: str) -> bool:
    if loss_steps == "window_end":
        return step_weight(stop - 1, seq_len, weighting) != 0.0
    return any(step_weight(t, seq_len, weighting) != 0.0 for t in range(start, stop))


def _step_target(y: Tensor, t: int, per_step_targets: bool) -> Tensor:
    return y[:, t] if per_step_targets else y


def train_epoch(  # noqa: C901 - one loop over the methods; splitting it waits for issue 29 (captured step)
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    method: Method = "fptt",
    k: Optional[int] = None,
    update_points: Optional[int] = None,
    weighting: Weighting = "linear",
    loss: str = "auto",
    loss_steps: Literal["every", "window_end"] = "every",
    per_step_targets: bool = False,
    clip_grad_norm: Optional[float] = None,
    max_batches: Optional[int] = None,
    progress: bool = False,
    description: str = "train",
    on_nonfinite: Literal["stop", "skip"] = "stop",
    feedback: str = "symmetric",
    feedback_seed: int = 0,
    capture: bool | str = False,
) -> EpochMetrics:
    """Train ``model`` for one pass over ``loader`` with ``method``; return the pass's metrics.

    A sequence of length T is cut into windows of k steps. At step t the loss is
    :math:`\\ell_t = w_t\\, L(v_t, y)` (THEORY §3.2), with :math:`v_t` the readout and :math:`L`
    the cross-entropy (integer targets) or the squared error (float targets).

    Args:
        model: a stateful model (:class:`fptt.models.StatefulModel`: ``init_state`` and
            ``step``), e.g. :class:`fptt.SpikingRNN` or an adapted snnTorch network.
        loader: batches ``(x, y)``, ``x`` of shape ``(batch, time, features)``.
        optimizer: :class:`fptt.FPTT` for ``"fptt"``; a plain ``torch.optim`` optimizer for the
            other methods.
        method: ``"fptt"`` (default): the state is detached at each window start, the mean of the
            window's losses is back-propagated through that window only and :class:`fptt.FPTT`
            adds its regularizer and steps (memory O(k), T/k updates per sequence).
            ``"tbptt"``: the same windows, a plain optimizer. ``"online"``: ``"tbptt"`` with
            k = 1. ``"bptt"``: one backward through the whole sequence, one update per sequence
            (memory O(T)). ``"eprop"`` / ``"ostl"``: eligibility traces carried forward, an update
            every k steps (ALIF/LIF networks; memory independent of T and k).
        k: steps per window (default 1); give ``k`` or ``update_points``, not both. Ignored by
            ``"bptt"``; ``"online"`` requires k = 1.
        update_points: the number of windows per sequence instead of ``k`` (the adding task's K);
            windows then have about T / update_points steps.
        weighting: :math:`w_t`: ``"linear"`` (default) :math:`(t+1)/T`, ``"uniform"`` 1, or
            ``"last"`` (only the final step).
        loss: ``"auto"`` (cross-entropy for integer targets, MSE for float), or explicit.
        loss_steps: ``"every"`` (default): every step of a window enters its loss;
            ``"window_end"``: only the last step of each window (the authors' adding task).
        per_step_targets: ``y`` has a time axis and step t is scored against ``y[:, t]``.
        clip_grad_norm: total-norm clipping for plain optimizers (for FPTT, set it on the optimizer).
        max_batches: stop after this many batches (quick runs).
        progress: show a tqdm progress bar, labelled ``description``.
        description: the progress bar's label.
        on_nonfinite: ``"stop"`` (default): a NaN/Inf loss, or a parameter made NaN/Inf by an
            update, raises ``FloatingPointError`` naming the batch and the time steps of the first
            bad update (checked once per batch, no per-update host sync). ``"skip"``: an update
            whose loss or gradient is not finite is not applied (gradients dropped, the state
            detached as at any window start) and counted in ``skipped_updates``; batches whose
            final-step loss is not finite are left out of the metrics (``extra["nonfinite_batches"]``).
            Costs one host sync per update.
        feedback: e-prop's feedback matrix of the readout error, ``"symmetric"`` (the readout
            weights) or ``"random"``; ignored by the other methods.
        feedback_seed: the seed of the ``"random"`` feedback matrix (the same in every epoch).
        capture: run each window's update as one compiled graph (:mod:`fptt.training.captured`;
            ``"fptt"``, ``"tbptt"`` and ``"online"`` with Adam, Adamax or SGD): ``True`` from the first
            update, ``"auto"`` after :data:`fptt.rules.CAPTURE_AFTER_STEPS` training steps counted
            across calls with the same optimizer, ``False`` (default) never. Where it cannot run, the
            eager update is used, with one logged line naming why. Results equal the eager ones to
            float rounding.

    Returns:
        The :class:`EpochMetrics` of the pass. For ``"eprop"``/``"ostl"`` its
        ``extra["trace_bytes"]`` is the memory the eligibility traces held (per batch).
    """
    check_stateful_model(model)
    _check_optimizer(method, optimizer)
    if loss_steps not in LOSS_STEPS:
        raise ValueError(f"loss_steps must be one of {LOSS_STEPS}, got {loss_steps!r}")
    check_window(k, update_points, method=method)
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
    learner = None
    if method in TRACE_METHODS:
        from .traces.learner import TraceLearner

        learner = TraceLearner(model, method, feedback=feedback, feedback_seed=feedback_seed)
    window = WindowUpdate(model, optimizer, clip_grad_norm=clip_grad_norm, on_nonfinite=on_nonfinite,
                          gradients=learner)
    trace_bytes = 0
    skip_nonfinite = window.skip_nonfinite
    first_skipped: Optional[str] = None
    nonfinite_batches = 0
    device = _model_device(model)
    dtype = next(model.parameters()).dtype
    captured = _CapturedWindows.create(model, optimizer, window, capture, method, clip_grad_norm, weighting,
                                       loss_steps, per_step_targets, dtype, device)
    model.train()
    accumulator = Accumulator()
    loss_fn: Optional[LossFn] = None
    started = time.perf_counter()
    total = loader_length(loader, max_batches)
    bar = progress_bar(loader, progress, total, description)
    for batch_index, inputs, y, loss_fn in prepared_batches(bar, model, loss, per_step_targets, max_batches,
                                                            device, dtype):
        seq_len = inputs.seq_len
        windows = _method_windows(seq_len, method, k, update_points)
        state = model.init_state(inputs.batch_size, device=device, dtype=dtype)
        if seq_len:
            check_first_step(model, inputs[0], state)  # once per batch: model.step runs unchecked
        window.start_sequence(inputs.batch_size, device, dtype)
        rate_sum = torch.zeros((), device=device) if hasattr(model, "firing_rates") else None
        output = None
        if captured is not None:
            captured.start_batch(seq_len)
        for start, stop in windows:
            has_loss = _window_has_loss(seq_len, weighting, start, stop, loss_steps)
            if captured is not None and has_loss:
                result = captured.run(inputs, y, state, start, stop, loss_fn.kind, rate_sum)
                if result is not None:
                    output, state, applied = result
                    if not applied and first_skipped is None:
                        first_skipped = f"batch {batch_index}, time steps {start}..{stop - 1}"
                    continue
            state = window.begin(state)
            # DistributedModel: only the last step of a window that will back-propagate syncs
            sync_step = stop - 1 if has_loss else -1
            for t in range(start, stop):
                output, state = window.step(inputs[t], state, sync=t == sync_step)
                if rate_sum is not None:
                    rate_sum += firing_rate(model, state)  # type: ignore[arg-type]  # a model with firing_rates
                if loss_steps == "window_end" and t != stop - 1:
                    continue
                weight = step_weight(t, seq_len, weighting)
                if weight == 0.0:
                    continue
                window.add(weight * loss_fn(output, _step_target(y, t, per_step_targets)))
            skipped_before = window.skipped
            window.close(stop - start if loss_steps == "every" and stop - start != 1 else 1)
            if window.skipped != skipped_before and first_skipped is None:
                first_skipped = f"batch {batch_index}, time steps {start}..{stop - 1}"
        if learner is not None:
            trace_bytes = max(trace_bytes, learner.nbytes())
        first = window.first_nonfinite()
        if first is not None:
            start, stop = _nth_update_window(first, seq_len, method, k, update_points, weighting, loss_steps)
            raise FloatingPointError(
                f"non-finite loss in batch {batch_index} at update {first + 1} of the batch (time steps "
                f"{start}..{stop - 1}, method={method}); check the inputs for extreme values; "
                f"{window.nonfinite_remedy()}"
            )
        bad_parameter = _first_nonfinite_parameter(model, window.parameters)
        if bad_parameter is not None:
            raise FloatingPointError(
                f"parameter {bad_parameter} became NaN/Inf during batch {batch_index} (method={method}): a "
                f"non-finite or exploding gradient reached the optimizer; {window.nonfinite_remedy()}"
            )
        assert output is not None
        added = accumulator.add_batch(output.detach(), y, loss_fn, rate_sum, seq_len, per_step_targets,
                                      drop_nonfinite=skip_nonfinite)
        if added is None:
            nonfinite_batches += 1  # left out of the metrics; its updates were guarded above
            continue
        batch_loss, running = added
        if progress and hasattr(bar, "set_postfix"):
            key = "acc" if loss_fn.kind == "cross_entropy" else "mse"
            postfix = {"loss": f"{batch_loss:.4f}", key: f"{running:.4f}"}
            if rate_sum is not None:
                postfix["rate"] = f"{float(rate_sum) / seq_len:.3f}"
            bar.set_postfix(postfix)
    kind = loss_fn.kind if loss_fn is not None else "cross_entropy"
    if skip_nonfinite and accumulator.samples == 0 and nonfinite_batches:
        raise FloatingPointError(f"every one of the {nonfinite_batches} batches gave a non-finite final loss; "
                                 "nothing was learnt (check the inputs and the learning rate)")
    metrics = accumulator.result(kind, window.updates, time.perf_counter() - started, device, window.skipped)
    if learner is not None:
        metrics.extra["trace_bytes"] = trace_bytes
    if window.skipped or nonfinite_batches:
        metrics.extra.update(nonfinite_batches=nonfinite_batches, first_skipped=first_skipped)
        warnings.warn(f"{window.skipped} update(s) skipped for a non-finite loss or gradient (first: "
                      f"{first_skipped}); {nonfinite_batches} batch(es) with a non-finite final loss left out "
                      "of the metrics", RuntimeWarning, stacklevel=2)
    return metrics


class _CapturedWindows:
    """The windows of :func:`train_epoch` that run as captured updates (:mod:`fptt.training.captured`)."""

    def __init__(self, captured, window: WindowUpdate, weighting: Weighting, loss_steps: str,
                 per_step_targets: bool, dtype: torch.dtype, device: torch.device) -> None:
        self.captured = captured
        self.window = window
        self.weighting = weighting
        self.every_step = loss_steps == "every"
        self.per_step_targets = per_step_targets
        self.dtype, self.device = dtype, device
        self.weights: Optional[Tensor] = None  # w_t of every step of the batch, on the device

    @classmethod
    def create(cls, model: nn.Module, optimizer: torch.optim.Optimizer, window: WindowUpdate, capture: bool | str,
               method: str, clip_grad_norm: Optional[float], weighting: Weighting, loss_steps: str,
               per_step_targets: bool, dtype: torch.dtype, device: torch.device) -> Optional[_CapturedWindows]:
        if capture is False:
            return None
        from .captured import captured_update_for

        captured = captured_update_for(model, optimizer, capture, method, clip_grad_norm)
        if captured is None:
            return None
        return cls(captured, window, weighting, loss_steps, per_step_targets, dtype, device)

    def start_batch(self, seq_len: int) -> None:
        self.seq_len = seq_len
        self.weights = None

    def run(self, inputs: StepInputs, y: Tensor, state: object, start: int, stop: int, loss_kind: str,
            rate_sum: Optional[Tensor]) -> Optional[tuple[Tensor, object, bool]]:
        """One window as a captured update: ``(last output, next state, applied)``, or None when this
        window runs the eager update (``"auto"`` still waiting, or the update cannot be captured)."""
        captured = self.captured
        if captured.failed is not None or not captured.use(stop - start):
            return None
        if self.weights is None:
            self.weights = torch.tensor(loss_weights(self.seq_len, self.weighting), dtype=self.dtype,
                                        device=self.device)
        result = captured([inputs[t] for t in range(start, stop)],
                          [_step_target(y, t, self.per_step_targets) for t in range(start, stop)],
                          self.weights[start:stop], state, loss_kind, self.every_step,
                          stop - start if self.every_step else 1, self.window.finite_flags(self.weights))
        if result is None:
            return None
        output, state, rates, applied = result
        if rate_sum is not None:
            rate_sum += rates
        return output, state, self.window.count_captured(applied)


def _first_nonfinite_parameter(model: nn.Module, parameters: Sequence[Tensor]) -> Optional[str]:
    """The name of the first NaN/Inf parameter, or None (one host sync per call: once per batch).

    A parameter's sum is non-finite when it holds a NaN/Inf (or, rarely, when finite values near
    the float maximum overflow: then each parameter is checked and None returned)."""
    if not parameters:
        return None
    sums = torch.stack([p.detach().sum().to(parameters[0].dtype) for p in parameters])
    if bool(torch.isfinite(sums).all()):
        return None
    names = {id(p): name for name, p in model.named_parameters()}
    for parameter in parameters:
        if not bool(torch.isfinite(parameter.detach()).all()):
            return names.get(id(parameter), "(unnamed)")
    return None  # only the sums overflowed


def _nth_update_window(index: int, seq_len: int, method: str, k: Optional[int], update_points: Optional[int],
                       weighting: Weighting, loss_steps: str) -> tuple[int, int]:
    """(start, stop) of the ``index``-th update of a sequence (error messages only)."""
    count = 0
    for start, stop in _method_windows(seq_len, method, k, update_points):
        if _window_has_loss(seq_len, weighting, start, stop, loss_steps):
            if count == index:
                return start, stop
            count += 1
    return 0, seq_len  # pragma: no cover - index beyond the updates


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss: str = "auto",
    per_step_targets: bool = False,
    max_batches: Optional[int] = None,
    progress: bool = False,
    description: str = "eval",
    decode: str = "last",
) -> EpochMetrics:
    r"""Run ``model`` over ``loader`` without gradients; loss and accuracy on the decoded scores.

    ``decode="last"``: the scores are the final step's output :math:`y_T`. ``decode="mean"``
    (classification with one label per sequence): the log of the mean over the steps of the class
    probabilities,

    .. math:: \hat y = \log \frac{1}{T} \sum_{t=1}^{T} \mathrm{softmax}(y_t),

    so that the loss is the cross-entropy of that mixture and the prediction its argmax: every step
    votes, as every step is trained to under a uniform loss weighting.

    To evaluate with FPTT's running average W̄, wrap the call: ``with optimizer.averaged(): ...``.
    """
    if decode not in DECODINGS:
        raise ValueError(f"decode must be one of {', '.join(DECODINGS)}, got {decode!r}")
    if decode == "mean" and per_step_targets:
        raise ValueError("decode='mean' scores one label per sequence; with per_step_targets every step has its "
                         "own target: use decode='last'")
    averaged = decode == "mean"
    check_stateful_model(model)
    device = _model_device(model)
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    accumulator = Accumulator()
    loss_fn: Optional[LossFn] = None
    started = time.perf_counter()
    try:
        bar = progress_bar(loader, progress, loader_length(loader, max_batches), description)
        for _, inputs, y, loss_fn in prepared_batches(bar, model, loss, per_step_targets, max_batches,
                                                       device, dtype):
            state = model.init_state(inputs.batch_size, device=device, dtype=dtype)
            if inputs.seq_len:
                check_first_step(model, inputs[0], state)
            if averaged and loss_fn.kind != "cross_entropy":
                raise ValueError(f"decode='mean' averages class probabilities; this loader's targets make a "
                                 f"{loss_fn.kind} task: use decode='last'")
            rate_sum = torch.zeros((), device=device) if hasattr(model, "firing_rates") else None
            log_probability_sum: Optional[Tensor] = None  # log Σ_t softmax(y_t), kept in logs: no underflow
            for t in range(inputs.seq_len):
                output, state = model.step(inputs[t], state)
                if averaged:
                    log_probabilities = output.log_softmax(dim=-1)
                    log_probability_sum = (log_probabilities if log_probability_sum is None
                                           else torch.logaddexp(log_probability_sum, log_probabilities))
                if rate_sum is not None:
                    rate_sum += firing_rate(model, state)  # type: ignore[arg-type]  # a model with firing_rates
            if log_probability_sum is not None:
                output = log_probability_sum - math.log(inputs.seq_len)
            accumulator.add_batch(output, y, loss_fn, rate_sum, inputs.seq_len, per_step_targets)
    finally:
        model.train(was_training)
    kind = loss_fn.kind if loss_fn is not None else "cross_entropy"
    return accumulator.result(kind, 0, time.perf_counter() - started, device)
