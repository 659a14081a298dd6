"""Spike functions with surrogate gradients (THEORY.md §2.6).

A spike function maps a membrane distance to threshold ``v = u - θ`` to spikes

.. math:: s = H(v) = [v > 0]

in the forward pass, and in the backward pass replaces the (zero almost everywhere) derivative of
the Heaviside step :math:`H` by the derivative of a smooth *primitive* :math:`\\tilde H`:

.. math:: \\frac{\\partial s}{\\partial v} \\approx \\tilde H'(v).

Every surrogate here is a frozen dataclass holding its constants, with

* ``derivative(v)``: the surrogate derivative used in backward,
* ``primitive(v)``:  the smooth function whose derivative that is (tests check it by finite
  differences),
* ``__call__(v)``:   the spike function itself (Heaviside forward, surrogate backward).

Select one by name with :func:`get_surrogate` (``"multi_gaussian"``, ``"fast_sigmoid"``,
``"arctan"``, ``"triangle"``) or pass a configured object, e.g. ``MultiGaussian(sigma=0.5)``.
``multi_gaussian`` is the paper's default with its default constants.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Union

import torch
from torch import Tensor

__all__ = [
    "Surrogate",
    "MultiGaussian",
    "FastSigmoid",
    "ArcTan",
    "Triangle",
    "multi_gaussian",
    "fast_sigmoid",
    "arctan",
    "triangle",
    "SURROGATES",
    "get_surrogate",
    "heaviside",
]


def heaviside(v: Tensor) -> Tensor:
    """The spike nonlinearity :math:`H(v) = [v > 0]`, in the dtype of ``v`` (no gradient)."""
    return (v > 0).to(v.dtype)


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative`` backward (one Function shared by all surrogates)."""

    @staticmethod
    def forward(ctx, v: Tensor, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return heaviside(v)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(v), None


def _normal_pdf(v: Tensor, mean: float, std: float) -> Tensor:
    return torch.exp(-((v - mean) ** 2) / (2.0 * std * std)) / (math.sqrt(2.0 * math.pi) * std)


def _normal_cdf(v: Tensor, mean: float, std: float) -> Tensor:
    return 0.5 * (1.0 + torch.erf((v - mean) / (std * math.sqrt(2.0))))


@dataclass(frozen=True)
class Surrogate:
    """Base class: Heaviside forward and ``derivative`` backward. Subclasses set the constants."""

    name = "surrogate"

    def derivative(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def primitive(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, v: Tensor) -> Tensor:
        if not isinstance(v, Tensor):
            raise TypeError(f"spike function expects a torch.Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise ValueError(f"spike function expects a floating-point tensor, got {v.dtype}")
        return _SpikeFunction.apply(v, self)

    def config(self) -> dict:
        """Name and constants, enough to rebuild the object with :func:`get_surrogate`."""
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class MultiGaussian(Surrogate):
    """The paper's multi-Gaussian surrogate (Yin et al. 2021/2023; THEORY.md §2.6).

    .. math::
        H'(v) \\approx \\gamma\\,[(1+h)\\,\\mathcal N(v;0,\\sigma) - h\\,\\mathcal N(v;\\sigma,s\\sigma)
        - h\\,\\mathcal N(v;-\\sigma,s\\sigma)]

    with :math:`\\mathcal N(v;\\mu,\\varsigma)` the Gaussian density. Defaults: σ = 0.3 (the
    authors' ``lens``), h = 0.15, s = 6, γ = 0.5. The primitive is the same sum of Gaussian CDFs.
    """

    sigma: float = 0.3
    h: float = 0.15
    s: float = 6.0
    gamma: float = 0.5
    name = "multi_gaussian"

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.s <= 0:
            raise ValueError(f"MultiGaussian needs sigma > 0 and s > 0, got sigma={self.sigma}, s={self.s}")

    def derivative(self, v: Tensor) -> Tensor:
        wide = self.s * self.sigma
        return self.gamma * (
            (1.0 + self.h) * _normal_pdf(v, 0.0, self.sigma)
            - self.h * _normal_pdf(v, self.sigma, wide)
            - self.h * _normal_pdf(v, -self.sigma, wide)
        )

    def primitive(self, v: Tensor) -> Tensor:
        wide = self.s * self.sigma
        return self.gamma * (
            (1.0 + self.h) * _normal_cdf(v, 0.0, self.sigma)
            - self.h * _normal_cdf(v, self.sigma, wide)
            - self.h * _normal_cdf(v, -self.sigma, wide)
        )


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Fast sigmoid (Zenke & Ganguli 2018): :math:`H'(v) \\approx 1/(1+k|v|)^2`,
    primitive :math:`v/(1+k|v|)`. Default slope k = 25."""

    slope: float = 25.0
    name = "fast_sigmoid"

    def __post_init__(self) -> None:
        if self.slope <= 0:
            raise ValueError(f"FastSigmoid needs slope > 0, got {self.slope}")

    def derivative(self, v: Tensor) -> Tensor:
        return 1.0 / (1.0 + self.slope * v.abs()) ** 2

    def primitive(self, v: Tensor) -> Tensor:
        return v / (1.0 + self.slope * v.abs())


@dataclass(frozen=True)
class ArcTan(Surrogate):
    """Arctan surrogate (Fang et al. 2021): primitive :math:`\\tfrac1\\pi\\arctan(\\tfrac\\pi2 a v)+\\tfrac12`,
    :math:`H'(v) \\approx \\tfrac a2 / (1 + (\\tfrac\\pi2 a v)^2)`. Default a = 2."""

    alpha: float = 2.0
    name = "arctan"

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"ArcTan needs alpha > 0, got {self.alpha}")

    def derivative(self, v: Tensor) -> Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * v) ** 2)

    def primitive(self, v: Tensor) -> Tensor:
        return torch.atan(math.pi / 2.0 * self.alpha * v) / math.pi + 0.5


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Triangle (piecewise linear, Bellec et al. 2018): :math:`H'(v) \\approx \\max(0, 1-|v|/w)/w`.
    Default half-width w = 1; the primitive is the matching piecewise quadratic."""

    width: float = 1.0
    name = "triangle"

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise ValueError(f"Triangle needs width > 0, got {self.width}")

    def derivative(self, v: Tensor) -> Tensor:
        return torch.clamp(1.0 - v.abs() / self.width, min=0.0) / self.width

    def primitive(self, v: Tensor) -> Tensor:
        x = torch.clamp(v / self.width, -1.0, 1.0)
        return 0.5 + x - torch.sign(x) * x * x / 2.0


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (MultiGaussian, FastSigmoid, ArcTan, Triangle)
}

SpikeFunction = Callable[[Tensor], Tensor]
SurrogateSpec = Union[str, Surrogate, dict, None]

multi_gaussian = MultiGaussian()
fast_sigmoid = FastSigmoid()
arctan = ArcTan()
triangle = Triangle()


def get_surrogate(spec: SurrogateSpec = "multi_gaussian", **constants: float) -> Surrogate:
    """Resolve a surrogate from a name (with optional constants), a config dict, or an object.

    >>> get_surrogate("fast_sigmoid", slope=10.0)
    FastSigmoid(slope=10.0)
    """
    if spec is None:
        spec = "multi_gaussian"
    if isinstance(spec, Surrogate):
        if constants:
            raise ValueError("pass constants either to the surrogate object or to get_surrogate, not both")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", "multi_gaussian")
        return get_surrogate(name, **spec, **constants)
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        if key not in SURROGATES:
            raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)}")
        try:
            return SURROGATES[key](**constants)
        except TypeError as error:
            raise ValueError(f"bad constants for surrogate {spec!r}: {error}") from None
    raise TypeError(f"surrogate must be a name, a dict or a Surrogate object, got {type(spec).__name__}")
