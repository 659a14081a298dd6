"""A function compiled by ``torch.compile`` at its first call, run eagerly if compilation fails.

The fused kernels of the library (:mod:`fptt.optim.fused_update`, :mod:`fptt.neurons.kernels`) are plain tensor
functions: eager PyTorch runs them one operation at a time, ``torch.compile`` turns each into one
loop per output (C++ on CPU, Triton on CUDA). Importing the compiler takes seconds, so it happens
at the first call, not at construction. Where the compiler cannot run (no C++ compiler, an
unsupported platform) the first failure is reported once as a ``RuntimeWarning`` and the same
function runs eagerly from then on: slower, never different.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch

__all__ = ["LazyCompiled"]


class LazyCompiled:
    """``fn`` compiled on first use (``compile=True``), or ``fn`` itself (``compile=False``).

    Args:
        fn: a function of tensors (and constants) without side effects on Python state.
        compile: compile it, or always run it eagerly (tests, debugging).
        name: how warnings refer to it.
    """

    def __init__(self, fn: Callable[..., Any], compile: bool = True, name: Optional[str] = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        self._compiled: Optional[Callable[..., Any]] = None
        self.eager = not compile

    @property
    def compiled(self) -> bool:
        """Whether calls go through ``torch.compile`` (until a compilation failure)."""
        return not self.eager

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.eager:
            return self.fn(*args, **kwargs)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=False)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as error:  # the compiler failed, before the compiled function ran
            first_line = str(error).splitlines()[0] if str(error) else ""
            warnings.warn(f"{self.name}: torch.compile failed ({type(error).__name__}: {first_line}); "
                          "running it eagerly from now on", RuntimeWarning, stacklevel=2)
            self.eager = True
            return self.fn(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:  # compiled callables do not pickle: recompile after loading
        return {"fn": self.fn, "name": self.name, "_compiled": None, "eager": self.eager}
