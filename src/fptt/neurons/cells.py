"""Spiking layer modules: synapses + one of the pure neuron steps of :mod:`fptt.neurons.functional`.

A cell owns its parameters and computes the input current of THEORY.md §2.1,

.. math:: d_t = \\mathrm{N}_x(W_x x_t + c_x) + \\mathrm{N}_r(W_r s_{t-1})

(``N`` an optional normalisation, identity by default; ``W_r`` only if ``recurrent``), then calls
its neuron's pure step. ``cell(x_t, state) -> (s_t, new_state)``; ``cell.init_state(batch)``.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import Tensor, nn

from ..spec.rules import BRF_B_OFFSET_INIT, BRF_DT, BRF_OMEGA_INIT, check_brf_b_offset_init, check_brf_dt, check_brf_omega_init
from ..spec.vocabulary import INITIAL_STATES, NORMS, RESETS, SYNAPSE_INITS, check_registry
from ..spec.vocabulary import NEURONS as NEURON_NAMES
from .functional import alif_step, brf_step, ltc_step
from .kernels import FusedDynamics
from .surrogate import SurrogateSpec, get_surrogate
from .types import ALIFParameters, BRFParameters, LTCParameters, NeuronState, Reset

__all__ = ["SpikingCell", "LTC", "ALIF", "LIF", "BRF", "NEURON_CLASSES", "get_neuron", "check_step_input",
           "initial_neuron_state"]

InitialMembrane = Literal["random", "zero"]
Norm = Literal["none", "layer"]
SynapseInit = Literal["xavier", "torch_default"]


def check_step_input(x: Tensor, features: int, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` is a floating (batch, features) tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != features:
        raise ValueError(f"{name} must have shape (batch, {features}) for one time step, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}; convert with .float()")


def initial_neuron_state(shape: tuple[int, ...], initial_membrane: str, baseline_threshold: float,
                         device: torch.device | str, dtype: torch.dtype) -> NeuronState:
    """The state at t = 0 (THEORY.md §2.7) of a layer whose neurons have ``shape`` (batch first):
    u_0 ~ U(0, 1) (``"random"``) or 0 (``"zero"``), b_0 = the baseline threshold, s_0 = 0."""
    if shape[0] <= 0:
        raise ValueError(f"batch_size must be positive, got {shape[0]}")
    if initial_membrane == "random":
        membrane = torch.rand(shape, device=device, dtype=dtype)
    else:
        membrane = torch.zeros(shape, device=device, dtype=dtype)
    adaptation = torch.full(shape, baseline_threshold, device=device, dtype=dtype)
    spikes = torch.zeros(shape, device=device, dtype=dtype)
    return NeuronState(membrane, adaptation, spikes)


def _make_norm(norm: str, size: int, scale: float) -> nn.Module:
    """Identity, or a layer norm N(z) = γ ⊙ (z − mean(z)) / sqrt(var(z) + ε) + δ over the neurons
    with γ initialised to ``scale`` and δ to 0. Its statistics are those of the current step and
    sample only, so it acts the same in training, evaluation and on a stream of any length."""
    if norm == "none":
        return nn.Identity()
    if norm == "layer":
        layer = nn.LayerNorm(size)
        nn.init.constant_(layer.weight, scale)
        return layer
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


class SpikingCell(nn.Module):
    """Shared mechanism of the spiking layers: synapses, normalisation, initial state.

    Subclasses implement :meth:`dynamics` (one pure neuron step on the current ``d_t``).
    """

    default_reset: Reset = "zero"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        recurrent: bool = True,
        surrogate: SurrogateSpec = "multi_gaussian",
        baseline_threshold: float = 0.1,
        adaptation_strength: float = 1.8,
        reset: Optional[Reset] = None,
        initial_membrane: InitialMembrane = "random",
        norm: Norm = "none",
        norm_scale: float = 1.0,
        synapse_init: SynapseInit = "xavier",
    ) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        if adaptation_strength < 0:
            raise ValueError(f"adaptation_strength (β) must be >= 0, got {adaptation_strength}")
        if initial_membrane not in INITIAL_STATES:
            raise ValueError(f"initial_membrane must be one of {INITIAL_STATES}, got {initial_membrane!r}")
        if synapse_init not in SYNAPSE_INITS:
            raise ValueError(f"synapse_init must be one of {SYNAPSE_INITS}, got {synapse_init!r}")
        if not norm_scale > 0:
            raise ValueError(f"norm_scale (γ at init) must be positive, got {norm_scale}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.recurrent = recurrent
        self.spike_fn = get_surrogate(surrogate)
        self.baseline_threshold = float(baseline_threshold)
        self.adaptation_strength = float(adaptation_strength)
        self.reset = reset or self.default_reset
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        self.initial_membrane = initial_membrane
        self.synapse_init = synapse_init
        self.input_weight = nn.Linear(input_size, hidden_size)
        self.input_norm = _make_norm(norm, hidden_size, norm_scale)
        self.recurrent_weight = nn.Linear(hidden_size, hidden_size, bias=False) if recurrent else None
        self.recurrent_norm = _make_norm(norm, hidden_size, norm_scale) if recurrent else None
        self._init_synapses()

    def _init_synapses(self) -> None:
        """``"xavier"``: W_x Xavier-uniform, c_x = 0, W_r orthogonal. ``"torch_default"``: PyTorch's
        default init of *one* ``nn.Linear(I + H, H)`` over [x_t, s_{t-1}] (the authors' adding-task
        layer): every entry of W_x, W_r and c_x ~ U(−1/√(I+H), 1/√(I+H))."""
        if self.synapse_init == "xavier":
            nn.init.xavier_uniform_(self.input_weight.weight)
            nn.init.zeros_(self.input_weight.bias)
            if self.recurrent_weight is not None:
                nn.init.orthogonal_(self.recurrent_weight.weight)
            return
        fan_in = self.input_size + (self.hidden_size if self.recurrent_weight is not None else 0)
        bound = 1.0 / fan_in ** 0.5
        tensors = [self.input_weight.weight, self.input_weight.bias]
        if self.recurrent_weight is not None:
            tensors.append(self.recurrent_weight.weight)
        for tensor in tensors:
            nn.init.uniform_(tensor, -bound, bound)

    def input_current(self, x: Tensor, spikes: Tensor) -> Tensor:
        """d_t = N_x(W_x x_t + c_x) + N_r(W_r s_{t-1})."""
        current = self.input_norm(self.input_weight(x))
        if self.recurrent_weight is not None:
            if isinstance(self.recurrent_norm, nn.Identity):
                # one addmm instead of mm + add (no (B, H) temporary, one kernel fewer per step)
                return torch.addmm(current, spikes, self.recurrent_weight.weight.t())
            current = current + self.recurrent_norm(self.recurrent_weight(spikes))  # type: ignore[misc]
        return current

    def init_state(
        self,
        batch_size: int,
        device: Optional[torch.device | str] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> NeuronState:
        """u_0 ~ U(0, 1) (or 0 with ``initial_membrane="zero"``), b_0 = baseline threshold, s_0 = 0."""
        reference = self.input_weight.weight
        return initial_neuron_state((batch_size, self.hidden_size), self.initial_membrane, self.baseline_threshold,
                                    reference.device if device is None else device,
                                    reference.dtype if dtype is None else dtype)

    def dynamics(self, current: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:  # pragma: no cover
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Raise unless ``x`` is a floating (batch, input_size) step input (the models' ``check_step``
        calls it once per batch; :meth:`forward` itself checks nothing)."""
        check_step_input(x, self.input_size)

    def forward(self, x: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        """One time step: ``x`` (batch, input_size) -> spikes (batch, hidden_size), new state (unchecked:
        see :meth:`check_input`)."""
        return self.dynamics(self.input_current(x, state.spikes), state)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, recurrent={self.recurrent}, reset={self.reset!r}, "
            f"b0={self.baseline_threshold}, beta={self.adaptation_strength}, surrogate={self.spike_fn}"
        )


class LTC(SpikingCell):
    r"""Liquid-time-constant spiking layer (:func:`~fptt.neurons.functional.ltc_step`, THEORY §2.2).

    With the input current :math:`d_t = W_x x_t + W_r s_{t-1} + c`, one step is

    .. math::
        \alpha_t &= \sigma(W_m [d_t, u_{t-1}] + c_m), \qquad \rho_t = \sigma(W_a [d_t, b_{t-1}] + c_a)\\
        b_t &= \rho_t b_{t-1} + (1 - \rho_t) s_{t-1}, \qquad \theta_t = b_0 + \beta b_t\\
        u_t &= u_{t-1} + \alpha_t (d_t - u_{t-1}), \qquad s_t = H(u_t - \theta_t), \qquad u_t \leftarrow u_t (1 - s_t)

    The rates :math:`\alpha_t`, :math:`\rho_t` are computed by ``membrane_rate`` and
    ``adaptation_rate`` (``nn.Linear(2H, H)`` each, Xavier-initialised). Default reset to zero,
    :math:`\beta = 1.8`, :math:`b_0 = 0.1`.

    Options (THEORY.md §4):

    * ``fixed_threshold=True`` (needs ``adaptation_strength=0``) turns adaptation off entirely: no
      ρ gate is built, b keeps its initial value and the threshold is the fixed b_0 (with
      ``baseline_threshold=0.5``, the authors' adding-task neuron). With β = 0 alone the ρ gate is
      still computed (b_t evolves but never reaches the output), as in the authors' code.
    * ``gate_slopes=True``: learnable slopes k (one scalar per gate, initialised to 1, as the
      authors' ``sigmoid_beta``): α_t = σ(k_m (W_m [d_t, u_{t-1}] + c_m)), likewise ρ_t.
    * ``chrono_tau=τ_max``: gate biases set so that at init, for zero gate input, α = 1/τ_m and
      ρ = 1 − 1/τ_a with τ_m, τ_a ~ U(2, τ_max) per neuron, i.e. c_m = −log(τ_m − 1) and
      c_a = log(τ_a − 1): memory spans up to τ_max steps from the first update (the "chrono"
      initialisation of Tallec & Ollivier 2018, applied to the liquid gates). Without it c = 0
      and every neuron starts with α = ρ = 1/2.
    * ``fused``: the gate matmuls and everything after them (rates, threshold, membrane, spike,
      reset and their backward) as one autograd node around two compiled functions
      (:mod:`fptt.neurons.kernels`); same results to float rounding. ``"auto"`` (default): the
      exact path for the first :data:`fptt.spec.rules.FUSE_AFTER_STEPS` training steps, compiled
      after (a run that short would not pay back the compile time); ``True``: compiled from the
      first step; ``False``: never. Where ``torch.compile`` cannot run, the exact path, with one
      logged line.
    """

    default_reset: Reset = "zero"

    def __init__(self, input_size: int, hidden_size: int, *, gate_slopes: bool = False,
                 chrono_tau: Optional[float] = None, fixed_threshold: bool = False, fused: bool | str = "auto",
                 **options) -> None:
        super().__init__(input_size, hidden_size, **options)
        self.fusion = FusedDynamics(fused, "LTC")
        self.fused = self.fusion.mode
        if fixed_threshold and self.adaptation_strength != 0:
            raise ValueError("fixed_threshold=True has no adaptation: set adaptation_strength=0 "
                             f"(got {self.adaptation_strength})")
        self.fixed_threshold = bool(fixed_threshold)
        if chrono_tau is not None and not chrono_tau > 2:
            raise ValueError(f"chrono_tau (the longest initial time constant, in steps) must be > 2, got {chrono_tau}")
        self.chrono_tau = chrono_tau
        self.membrane_rate = nn.Linear(2 * hidden_size, hidden_size)
        adaptive = not self.fixed_threshold
        self.adaptation_rate = nn.Linear(2 * hidden_size, hidden_size) if adaptive else None
        for layer in (self.membrane_rate, self.adaptation_rate):
            if layer is not None:
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        if chrono_tau is not None:
            with torch.no_grad():
                self.membrane_rate.bias.copy_(-torch.log(torch.empty(hidden_size).uniform_(2.0, chrono_tau) - 1.0))
                if self.adaptation_rate is not None:
                    self.adaptation_rate.bias.copy_(torch.log(torch.empty(hidden_size).uniform_(2.0, chrono_tau) - 1.0))
        self.membrane_slope = nn.Parameter(torch.ones(())) if gate_slopes else None
        self.adaptation_slope = nn.Parameter(torch.ones(())) if gate_slopes and adaptive else None

    def parameters_tuple(self) -> LTCParameters:
        adaptation = self.adaptation_rate
        return LTCParameters(
            self.membrane_rate.weight, self.membrane_rate.bias,
            None if adaptation is None else adaptation.weight, None if adaptation is None else adaptation.bias,
            self.membrane_slope, self.adaptation_slope,
        )

    def dynamics(self, current: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        return ltc_step(
            current, state, self.parameters_tuple(), self.spike_fn,
            baseline_threshold=self.baseline_threshold,
            adaptation_strength=self.adaptation_strength,
            reset=self.reset,
            kernels=self.fusion.kernels_now(self.spike_fn),
        )


class ALIF(SpikingCell):
    r"""Adaptive LIF layer with learnable per-neuron τ_m, τ_adp (:func:`~fptt.neurons.functional.alif_step`, THEORY §2.3).

    .. math::
        \alpha &= e^{-dt/\tau_m}, \qquad \rho = e^{-dt/\tau_{adp}}, \qquad
        b_t = \rho\, b_{t-1} + (1 - \rho)\, s_{t-1}, \qquad \theta_t = b_0 + \beta b_t\\
        u_t &= \alpha u_{t-1} + (1 - \alpha)\, d_t - \theta_t s_{t-1}\, dt, \qquad s_t = H(u_t - \theta_t)

    τ_m ~ N(``tau_membrane_init``), τ_adp ~ N(``tau_adaptation_init``) at initialisation (mean, std
    in steps). Default reset by subtraction (SRNN, the line above), β = 1.8, b_0 = 0.1.
    """

    default_reset: Reset = "subtract"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        tau_membrane_init: tuple[float, float] = (20.0, 5.0),
        tau_adaptation_init: tuple[float, float] = (200.0, 25.0),
        dt: float = 1.0,
        **options,
    ) -> None:
        super().__init__(input_size, hidden_size, **options)
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.dt = float(dt)
        self.tau_membrane = nn.Parameter(torch.empty(hidden_size))
        self.tau_adaptation = nn.Parameter(torch.empty(hidden_size))
        nn.init.normal_(self.tau_membrane, *tau_membrane_init)
        nn.init.normal_(self.tau_adaptation, *tau_adaptation_init)
        with torch.no_grad():
            self.tau_membrane.clamp_(min=1.0)
            self.tau_adaptation.clamp_(min=1.0)

    def dynamics(self, current: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        return alif_step(
            current, state, ALIFParameters(self.tau_membrane, self.tau_adaptation), self.spike_fn,
            baseline_threshold=self.baseline_threshold,
            adaptation_strength=self.adaptation_strength,
            reset=self.reset,
            dt=self.dt,
        )


class LIF(ALIF):
    """Leaky integrate-and-fire layer: :class:`ALIF` with adaptation off (β = 0)."""

    def __init__(self, input_size: int, hidden_size: int, **options) -> None:
        if options.get("adaptation_strength", 0.0) != 0.0:
            raise ValueError("LIF has no adaptation; use ALIF for adaptation_strength > 0")
        options["adaptation_strength"] = 0.0
        super().__init__(input_size, hidden_size, **options)
        # with β = 0 the adaptation time constant never affects the output: keep it as a fixed
        # buffer, not a parameter that would receive only the optimizer's side effects
        tau_adaptation = self.tau_adaptation.detach().clone()
        del self.tau_adaptation
        self.register_buffer("tau_adaptation", tau_adaptation)


class BRF(SpikingCell):
    r"""Balanced resonate-and-fire layer (:func:`~fptt.neurons.functional.brf_step`, THEORY §2.8;
    Higuchi, Kairat, Bohté and Otte, "Balanced Resonate-and-Fire Neurons", ICML 2024).

    Each neuron is a damped oscillator u + i v driven by the input current d_t, Euler-integrated
    with step :math:`\delta` (``dt``):

    .. math::
        b_t &= p(\omega) - b_{off} - q_{t-1}, \qquad
        p(\omega) = \big(-1 + \sqrt{1 - (\delta\omega)^2}\big) / \delta\\
        u_t &= u_{t-1} + \delta (b_t u_{t-1} - \omega v_{t-1} + d_t), \qquad
        v_t = v_{t-1} + \delta (\omega u_{t-1} + b_t v_{t-1})\\
        z_t &= H(u_t - \theta - q_{t-1}), \qquad q_t = \gamma q_{t-1} + z_t

    with learnable per-neuron :math:`\omega = |\hat\omega|` (``omega``) and
    :math:`b_{off} = |\hat b|` (``b_offset``), initialised :math:`\hat\omega \sim U` (``omega_init``,
    default 15 50) and :math:`\hat b \sim U` (``b_offset_init``, default 0.1 1), the paper's S-MNIST
    ranges; :math:`\delta = 0.01`, :math:`\theta = 1` (``baseline_threshold``), :math:`\gamma = 0.9`
    (``refractory_decay``). The refractory variable q (the state's ``adaptation``) is the neuron's
    smooth reset: it raises the threshold and damps the oscillation after a spike; there is no other
    reset, so ``reset`` and ``adaptation_strength`` are not options. The state starts at rest,
    u = v = q = z = 0, as in the reference (``initial_membrane="random"`` is refused); v is the
    state's ``oscillation``. The paper trained BRF networks with Adam at lr 0.1 (S-MNIST).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        omega_init: tuple[float, float] = BRF_OMEGA_INIT,
        b_offset_init: tuple[float, float] = BRF_B_OFFSET_INIT,
        dt: float = BRF_DT,
        refractory_decay: float = 0.9,
        **options,
    ) -> None:
        if options.get("reset") is not None:
            raise ValueError("BRF has no reset option: its refractory variable q (threshold θ + q, damping "
                             f"p(ω) − b_off − q) is its smooth reset; got reset={options['reset']!r}")
        if options.get("adaptation_strength", 0.0) != 0.0:
            raise ValueError("BRF has no adaptation strength β: its threshold θ + q_{t-1} adds the refractory "
                             f"variable with weight 1; got adaptation_strength={options['adaptation_strength']}")
        if options.get("initial_membrane", "zero") != "zero":
            raise ValueError("BRF starts at rest (u = v = q = 0, the reference's initial state): "
                             f"initial_membrane must be 'zero', got {options['initial_membrane']!r}")
        options.update(adaptation_strength=0.0, initial_membrane="zero")
        options.setdefault("baseline_threshold", 1.0)
        super().__init__(input_size, hidden_size, **options)
        self.dt = check_brf_dt(dt)
        self.omega_init = check_brf_omega_init(omega_init, self.dt)
        self.b_offset_init = check_brf_b_offset_init(b_offset_init)
        if not 0.0 <= refractory_decay < 1.0:
            raise ValueError(f"refractory_decay (γ) must lie in [0, 1), got {refractory_decay}")
        self.refractory_decay = float(refractory_decay)
        self.omega = nn.Parameter(torch.empty(hidden_size).uniform_(*self.omega_init))
        self.b_offset = nn.Parameter(torch.empty(hidden_size).uniform_(*self.b_offset_init))

    def init_state(
        self,
        batch_size: int,
        device: Optional[torch.device | str] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> NeuronState:
        """At rest: u_0 = v_0 = q_0 = z_0 = 0 (``membrane``, ``oscillation``, ``adaptation``, ``spikes``):
        :func:`initial_neuron_state` with a zero membrane and q_0 = 0, plus the oscillation."""
        reference = self.input_weight.weight
        state = initial_neuron_state((batch_size, self.hidden_size), "zero", 0.0,
                                     reference.device if device is None else device,
                                     reference.dtype if dtype is None else dtype)
        return state._replace(oscillation=torch.zeros_like(state.membrane))

    def dynamics(self, current: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        return brf_step(
            current, state, BRFParameters(self.omega, self.b_offset), self.spike_fn,
            baseline_threshold=self.baseline_threshold, dt=self.dt, refractory_decay=self.refractory_decay,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, recurrent={self.recurrent}, theta={self.baseline_threshold}, "
            f"dt={self.dt}, gamma={self.refractory_decay}, surrogate={self.spike_fn}"
        )


NEURON_CLASSES: dict[str, type[SpikingCell]] = {"ltc": LTC, "alif": ALIF, "lif": LIF, "brf": BRF}
check_registry("neuron", tuple(NEURON_CLASSES), NEURON_NAMES)


def get_neuron(name: str) -> type[SpikingCell]:
    """The cell class for ``"ltc"``, ``"alif"``, ``"lif"`` or ``"brf"``."""
    key = name.lower() if isinstance(name, str) else name
    if key not in NEURON_CLASSES:
        raise ValueError(f"unknown neuron type {name!r}; choose one of {sorted(NEURON_CLASSES)}")
    return NEURON_CLASSES[key]
