"""Plain reference implementation of one FPTT update, written for clarity, not speed.

Explicit Python loops over parameters, the SPEC §3 formulas written out literally, and
hand-written SGD (momentum, L2 weight decay), Adam and Adamax updates following the
textbook/PyTorch definitions. Used as an oracle for ``fptt.optim.FPTT``.

    g    = ∇ℓ + α (W − W̄) − λ
    g    = g · min(1, c / (‖g‖_total + 1e-6))            (optional clipping)
    W    = inner_update(W, g)
    λ    = λ − α (W − W̄)
    W̄    = (1 − β) W̄ + β W − (β / α) λ                   (new W, new λ)
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


class ReferenceFPTT:
    """FPTT with an explicit per-parameter loop.

    Args:
        groups: list of dicts with ``params`` (tensors whose ``.grad`` is read),
            ``alpha``, ``beta`` and the inner optimizer's hyper-parameters (``lr`` and,
            depending on ``kind``, ``momentum``, ``weight_decay``, ``betas``, ``eps``).
        kind: ``"sgd"``, ``"adam"`` or ``"adamax"``.
        clip: optional max total 2-norm of the combined gradient.
    """

    def __init__(self, groups: list[dict[str, Any]], kind: str, clip: float | None = None) -> None:
        self.groups = groups
        self.kind = kind
        self.clip = clip
        self.avg: dict[int, Tensor] = {}
        self.lam: dict[int, Tensor] = {}
        self.opt: dict[int, dict[str, Any]] = {}
        for group in groups:
            for p in group["params"]:
                self.avg[id(p)] = p.detach().clone()
                self.lam[id(p)] = torch.zeros_like(p)
                self.opt[id(p)] = {}

    @torch.no_grad()
    def step(self) -> None:
        combined: dict[int, Tensor] = {}
        for group in self.groups:
            a = group["alpha"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_bar = self.avg[id(p)]
                lam = self.lam[id(p)]
                combined[id(p)] = p.grad + a * (p - w_bar) - lam

        if self.clip is not None and combined:
            total = math.sqrt(sum(float((g * g).sum()) for g in combined.values()))
            coef = min(1.0, self.clip / (total + 1e-6))
            combined = {k: g * coef for k, g in combined.items()}

        for group in self.groups:
            for p in group["params"]:
                if id(p) in combined:
                    p.copy_(self._inner(p, combined[id(p)], group, self.opt[id(p)]))

        for group in self.groups:
            a, b = group["alpha"], group["beta"]
            for p in group["params"]:
                if id(p) not in combined:
                    continue
                w_bar = self.avg[id(p)]
                lam_new = self.lam[id(p)] - a * (p - w_bar)
                self.lam[id(p)] = lam_new
                self.avg[id(p)] = (1 - b) * w_bar + b * p - (b / a) * lam_new

    def _inner(self, p: Tensor, g: Tensor, group: dict[str, Any], st: dict[str, Any]) -> Tensor:
        lr = group["lr"]
        wd = group.get("weight_decay", 0.0)
        if wd:
            g = g + wd * p
        if self.kind == "sgd":
            mom = group.get("momentum", 0.0)
            if mom:
                if "buf" not in st:
                    st["buf"] = g.clone()
                else:
                    st["buf"] = mom * st["buf"] + g
                g = st["buf"]
            return p - lr * g
        b1, b2 = group.get("betas", (0.9, 0.999))
        eps = group.get("eps", 1e-8)
        st["t"] = st.get("t", 0) + 1
        t = st["t"]
        m = st.get("m", torch.zeros_like(p))
        m = b1 * m + (1 - b1) * g
        st["m"] = m
        if self.kind == "adam":
            v = st.get("v", torch.zeros_like(p))
            v = b2 * v + (1 - b2) * g * g
            st["v"] = v
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            return p - lr * m_hat / (v_hat.sqrt() + eps)
        if self.kind == "adamax":
            u = st.get("u", torch.zeros_like(p))
            u = torch.maximum(b2 * u, g.abs() + eps)
            st["u"] = u
            return p - (lr / (1 - b1**t)) * m / u
        raise ValueError(self.kind)
