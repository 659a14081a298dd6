"""FPTT's dynamic regularizer: its value (for tests, logging and documentation) and the
``W − W̄`` that :class:`~fptt.optim.FPTT` computes at every update."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["regularizer"]


def _difference(params: list[Tensor], averages: list[Tensor], scratch: list[Tensor] | None) -> list[Tensor]:
    """``W − W̄`` for a bucket, bit-identical whichever way it is computed.

    On CPU a fresh allocation per step costs page faults that dwarf the arithmetic, so the
    difference goes into a persistent scratch buffer; on accelerators the caching allocator
    makes ``_foreach_sub`` (one kernel instead of two) the better choice. Computing
    ``α W − α W̄`` without the difference would avoid both but loses precision through
    cancellation (badly so for bfloat16 parameters).
    """
    if scratch is None:
        return list(torch._foreach_sub(params, averages))
    torch._foreach_copy_(scratch, params)
    torch._foreach_sub_(scratch, averages)
    return scratch


def regularizer(
    params: Iterable[Tensor],
    averages: Iterable[Tensor],
    lambdas: Iterable[Tensor],
    alpha: float | Sequence[float],
) -> Tensor:
    r"""FPTT's dynamic regularizer ``Σ_W (α/2) ‖W − W̄‖² − ⟨λ, W⟩`` as a scalar tensor.

    Differentiable with respect to ``params``; ``averages`` and ``lambdas`` are treated as
    constants (detached). Its gradient with respect to ``W`` is ``α (W − W̄) − λ``, which is
    exactly what :meth:`FPTT.step` adds to ``W.grad``. This function is meant for tests,
    logging and documentation; the optimizer never calls it.

    Args:
        params: the parameters ``W``.
        averages: the running averages ``W̄`` (same shapes, same order).
        lambdas: the states ``λ`` (same shapes, same order).
        alpha: ``α``, one value for all parameters or one per parameter.

    Returns:
        A 0-dim tensor (dtype/device of the first parameter).
    """
    params = list(params)
    averages = list(averages)
    lambdas = list(lambdas)
    if not (len(params) == len(averages) == len(lambdas)):
        raise ValueError(
            f"regularizer: got {len(params)} params, {len(averages)} averages and "
            f"{len(lambdas)} lambdas; the three lists must have the same length"
        )
    if not params:
        raise ValueError("regularizer: empty parameter list")
    if isinstance(alpha, (int, float)):
        alphas = [float(alpha)] * len(params)
    else:
        alphas = [float(a) for a in alpha]
        if len(alphas) != len(params):
            raise ValueError(
                f"regularizer: got {len(alphas)} alphas for {len(params)} parameters"
            )
    total = params[0].new_zeros(())
    for w, w_bar, lam, a in zip(params, averages, lambdas, alphas):
        w_bar = w_bar.detach()
        lam = lam.detach()
        total = total + 0.5 * a * (w - w_bar).pow(2).sum() - (lam * w).sum()
    return total
