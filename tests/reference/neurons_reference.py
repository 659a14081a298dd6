"""Literal, slow reference implementations of the SPEC §2 neuron and readout equations.

Written from the SPEC text, not from ``fptt.neurons``: plain Python floats, explicit loops over
batch rows and neuron indices, explicit sums for every matrix product, ``math.exp`` for every
exponential. Tensors enter and leave as nested lists (``tensor.tolist()``).

Shapes (as nested lists): a batch of vectors is ``[batch][n]``; a weight matrix is ``[rows][cols]``
with ``y_i = sum_j W[i][j] x_j`` (the ``nn.Linear`` convention).
"""
from __future__ import annotations

import math

Vector = list  # list[float]
Matrix = list  # list[list[float]]


def sigmoid(x: float) -> float:
    """σ(x) = 1 / (1 + e^{-x})."""
    return 1.0 / (1.0 + math.exp(-x))


def heaviside(x: float) -> float:
    """H(x) = 1 if x > 0 else 0."""
    return 1.0 if x > 0.0 else 0.0


def affine(weight: Matrix, vector: Vector, bias: Vector | None = None) -> Vector:
    """y_i = Σ_j W_ij v_j (+ c_i), written as explicit sums."""
    result = []
    for i in range(len(weight)):
        total = 0.0
        for j in range(len(vector)):
            total += weight[i][j] * vector[j]
        if bias is not None:
            total += bias[i]
        result.append(total)
    return result


def input_current(
    x: Matrix, previous_spikes: Matrix, input_weight: Matrix, input_bias: Vector, recurrent_weight: Matrix | None
) -> Matrix:
    """d_t = W_x x_t + c_x + W_r s_{t-1}, per batch row (no normalisation)."""
    currents = []
    for row in range(len(x)):
        feedforward = affine(input_weight, x[row], input_bias)
        if recurrent_weight is None:
            currents.append(feedforward)
            continue
        recurrent = affine(recurrent_weight, previous_spikes[row])
        currents.append([feedforward[i] + recurrent[i] for i in range(len(feedforward))])
    return currents


def ltc_step(
    current: Matrix,
    membrane: Matrix,
    adaptation: Matrix,
    spikes: Matrix,
    membrane_weight: Matrix,
    membrane_bias: Vector,
    adaptation_weight: Matrix,
    adaptation_bias: Vector,
    *,
    b0: float = 0.1,
    beta: float = 1.8,
    reset: str = "zero",
) -> tuple[Matrix, Matrix, Matrix]:
    """SPEC §2 LTC neuron, one step. Returns (u_t after reset, b_t, s_t).

    α_t = σ(W_m [d_t, u_{t-1}] + c_m);  ρ_t = σ(W_a [d_t, b_{t-1}] + c_a)
    b_t = ρ_t b_{t-1} + (1 − ρ_t) s_{t-1};  θ_t = b_0 + β b_t
    u_t = u_{t-1} + α_t (d_t − u_{t-1});  s_t = H(u_t − θ_t)
    reset: u_t ← u_t (1 − s_t) ("zero") or u_t − θ_t s_t ("subtract")
    """
    new_u, new_b, new_s = [], [], []
    for row in range(len(current)):
        d = current[row]
        u_prev = membrane[row]
        b_prev = adaptation[row]
        s_prev = spikes[row]
        hidden = len(d)
        u_row, b_row, s_row = [], [], []
        for i in range(hidden):
            # [d_t, u_{t-1}] concatenated: first `hidden` columns act on d, the rest on u_{t-1}
            pre_alpha = membrane_bias[i]
            pre_rho = adaptation_bias[i]
            for j in range(hidden):
                pre_alpha += membrane_weight[i][j] * d[j]
                pre_alpha += membrane_weight[i][hidden + j] * u_prev[j]
                pre_rho += adaptation_weight[i][j] * d[j]
                pre_rho += adaptation_weight[i][hidden + j] * b_prev[j]
            alpha = sigmoid(pre_alpha)
            rho = sigmoid(pre_rho)
            b = rho * b_prev[i] + (1.0 - rho) * s_prev[i]
            theta = b0 + beta * b
            u = u_prev[i] + alpha * (d[i] - u_prev[i])
            s = heaviside(u - theta)
            if reset == "zero":
                u = u * (1.0 - s)
            elif reset == "subtract":
                u = u - theta * s
            else:
                raise ValueError(reset)
            u_row.append(u)
            b_row.append(b)
            s_row.append(s)
        new_u.append(u_row)
        new_b.append(b_row)
        new_s.append(s_row)
    return new_u, new_b, new_s


def alif_step(
    current: Matrix,
    membrane: Matrix,
    adaptation: Matrix,
    spikes: Matrix,
    tau_membrane: Vector,
    tau_adaptation: Vector,
    *,
    b0: float = 0.1,
    beta: float = 1.8,
    reset: str = "subtract",
    dt: float = 1.0,
) -> tuple[Matrix, Matrix, Matrix]:
    """SPEC §2 ALIF neuron (SRNN), one step. Returns (u_t, b_t, s_t).

    α = exp(−dt/τ_m);  ρ = exp(−dt/τ_adp)
    b_t = ρ b_{t-1} + (1 − ρ) s_{t-1};  θ_t = b_0 + β b_t
    "subtract" (SRNN): u_t = α u_{t-1} + (1 − α) d_t − θ_t s_{t-1} dt
    "zero": a neuron that spiked at t−1 restarts from 0: u_t = α u_{t-1} (1 − s_{t-1}) + (1 − α) d_t
    s_t = H(u_t − θ_t)       (R_m = 1)
    """
    new_u, new_b, new_s = [], [], []
    for row in range(len(current)):
        u_row, b_row, s_row = [], [], []
        for i in range(len(current[row])):
            alpha = math.exp(-dt / tau_membrane[i])
            rho = math.exp(-dt / tau_adaptation[i])
            s_prev = spikes[row][i]
            b = rho * adaptation[row][i] + (1.0 - rho) * s_prev
            theta = b0 + beta * b
            if reset == "subtract":
                u = alpha * membrane[row][i] + (1.0 - alpha) * current[row][i] - theta * s_prev * dt
            elif reset == "zero":
                u_start = 0.0 if s_prev == 1.0 else membrane[row][i]
                u = alpha * u_start + (1.0 - alpha) * current[row][i]
            else:
                raise ValueError(reset)
            s = heaviside(u - theta)
            u_row.append(u)
            b_row.append(b)
            s_row.append(s)
        new_u.append(u_row)
        new_b.append(b_row)
        new_s.append(s_row)
    return new_u, new_b, new_s


def lif_step(
    current: Matrix,
    membrane: Matrix,
    adaptation: Matrix,
    spikes: Matrix,
    tau_membrane: Vector,
    tau_adaptation: Vector,
    *,
    b0: float = 0.1,
    reset: str = "subtract",
    dt: float = 1.0,
) -> tuple[Matrix, Matrix, Matrix]:
    """SPEC §2 LIF: the ALIF neuron with β = 0 (threshold fixed at b_0)."""
    return alif_step(
        current, membrane, adaptation, spikes, tau_membrane, tau_adaptation,
        b0=b0, beta=0.0, reset=reset, dt=dt,
    )


def readout_current(spikes: Matrix, weight: Matrix, bias: Vector) -> Matrix:
    """z_t = W_o s_t + c_o, per batch row."""
    return [affine(weight, spikes[row], bias) for row in range(len(spikes))]


def fixed_readout_step(current: Matrix, membrane: Matrix, tau_out: Vector) -> Matrix:
    """v_t = k v_{t-1} + (1 − k) z_t with k = exp(−1/τ_out). Returns v_t."""
    result = []
    for row in range(len(current)):
        v_row = []
        for o in range(len(current[row])):
            k = math.exp(-1.0 / tau_out[o])
            v_row.append(k * membrane[row][o] + (1.0 - k) * current[row][o])
        result.append(v_row)
    return result


def liquid_readout_step(current: Matrix, membrane: Matrix, weight: Matrix, bias: Vector) -> Matrix:
    """a_t = σ(W'_o [z_t, v_{t-1}] + c);  v_t = (1 − a_t) v_{t-1} + a_t z_t. Returns v_t."""
    result = []
    for row in range(len(current)):
        z = current[row]
        v_prev = membrane[row]
        outputs = len(z)
        v_row = []
        for o in range(outputs):
            pre = bias[o]
            for j in range(outputs):
                pre += weight[o][j] * z[j]
                pre += weight[o][outputs + j] * v_prev[j]
            a = sigmoid(pre)
            v_row.append((1.0 - a) * v_prev[o] + a * z[o])
        result.append(v_row)
    return result
