"""Compiled kernels: compiled at first use, cached on disk, switched on where they pay, and
replaced by the exact path where the compiler cannot run.

The fused kernels of the library (:mod:`fptt.optim.fused_update`, :mod:`fptt.neurons.kernels`) are
plain tensor functions: eager PyTorch runs them one operation at a time, ``torch.compile`` turns
each into one loop per output (C++ on CPU, Triton on CUDA). This module holds the three rules
around them:

* **When to compile** (``fused="auto"``, the default of :class:`fptt.optim.FPTT`, the LTC layers
  and ``fptt train``). Compiling costs a one-off ``C`` seconds and saves ``Δ`` seconds per step.
  Where the length of the run is known (``fptt train``: epochs × batches × time steps), the
  compiled path is used when the run has at least :data:`fptt.spec.rules.FUSE_AFTER_STEPS` steps. Where it is not
  (a Python training loop), the first :data:`fptt.spec.rules.FUSE_AFTER_STEPS` training steps run the exact path
  and the rest the compiled one: the "rent, then buy" rule of the ski-rental problem, which never
  costs more than twice the best choice made in hindsight. :data:`fptt.spec.rules.FUSE_AFTER_STEPS` = C / Δ with
  C the compile time with a warm on-disk cache and Δ the saving per step, both measured
  (docs/PERFORMANCE.md, "Fast by default").
* **Where the compiled code lives.** Unless ``TORCHINDUCTOR_CACHE_DIR`` names a directory of the
  user's, torch's compile cache goes to ``$FPTT_CACHE_DIR/torchinductor``, by default ``~/.cache/fptt/torchinductor``
  (``$XDG_CACHE_HOME`` is honoured) instead of torch's default under ``/tmp``, so that a second
  run on the same machine loads its kernels instead of compiling them again.
* **When the compiler cannot run** (no C++ compiler, an unsupported platform), the call that
  found out runs the same function eagerly, one line is logged (``logging`` logger ``"fptt"``,
  once per process), and the owner of the kernel uses the exact path from then on. Never a
  traceback.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from .spec.rules import FUSE_AFTER_STEPS

__all__ = ["LazyCompiled", "FusePolicy", "FusedMode", "FUSED_MODES", "check_fused_mode", "compile_cache_dir"]

logger = logging.getLogger("fptt")

FusedMode = Union[bool, str]
#: ``False`` exact path; ``True`` compiled from the first step; ``"auto"`` by the run length
#: (module docstring); ``"eager"`` the fused equations without compiling (tests, debugging).
FUSED_MODES: tuple[FusedMode, ...] = (False, True, "auto", "eager")

_reported_failure = False


def check_fused_mode(value: Any, where: str) -> FusedMode:
    """``value`` if it is one of :data:`FUSED_MODES`, else a ``ValueError`` naming ``where``."""
    if any(value is mode or (isinstance(mode, str) and isinstance(value, str) and value == mode)
           for mode in FUSED_MODES):
        return value
    raise ValueError(f"{where}: fused must be one of {FUSED_MODES}, got {value!r}")


def _is_torch_default(directory: str) -> bool:
    """Whether ``directory`` is torch's own default cache directory (``/tmp/torchinductor_<user>``),
    which importing ``torch._inductor`` (``torch.optim`` does) writes into the environment."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # pragma: no cover - a torch without inductor
        return False
    return os.path.abspath(directory) == os.path.abspath(default_cache_dir())


def compile_cache_dir() -> Path:
    """The on-disk compile cache: ``TORCHINDUCTOR_CACHE_DIR`` if set to a directory of the user's
    (not torch's default under ``/tmp``), else ``$FPTT_CACHE_DIR/torchinductor`` (default
    ``$XDG_CACHE_HOME/fptt`` or ``~/.cache/fptt``), which is then set as ``TORCHINDUCTOR_CACHE_DIR``
    for this process (torch reads it at every compilation)."""
    configured = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if configured and not _is_torch_default(configured):
        return Path(configured)
    base = os.environ.get("FPTT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fptt")
    path = Path(base) / "torchinductor"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path


class FusePolicy:
    """Whether a fused kernel's owner uses it at this step, for one of :data:`FUSED_MODES`.

    ``"auto"`` counts the training steps it is asked about (``training=True``) and answers
    ``False`` for the first ``after`` of them, ``True`` from then on (module docstring); the
    other modes answer ``mode is not False`` at every step. Evaluation steps
    (``training=False``) are not counted and follow the current answer.
    """

    def __init__(self, mode: FusedMode, after: int = FUSE_AFTER_STEPS) -> None:
        self.mode = mode
        self.after = int(after)
        self.steps = 0

    def use_fused(self, training: bool = True) -> bool:
        if self.mode != "auto":
            return self.mode is not False
        if self.steps >= self.after:
            return True
        if training:
            self.steps += 1
        return False


class LazyCompiled:
    """``fn`` compiled on first use (``compile=True``), or ``fn`` itself (``compile=False``).

    If compiling fails, the call runs ``fn`` eagerly, :attr:`failed` becomes ``True`` (owners then
    switch to their exact path) and one line is logged, once per process.

    Args:
        fn: a function of tensors (and constants) without side effects on Python state.
        compile: compile it, or always run it eagerly (tests, debugging).
        name: how the log line refers to it.
    """

    def __init__(self, fn: Callable[..., Any], compile: bool = True, name: Optional[str] = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        self._compiled: Optional[Callable[..., Any]] = None
        self.eager = not compile
        self.failed = False

    @property
    def compiled(self) -> bool:
        """Whether calls go through ``torch.compile`` (until a compilation failure)."""
        return not self.eager

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.eager:
            return self.fn(*args, **kwargs)
        if self._compiled is None:
            compile_cache_dir()
            # no per-call size/stride/alignment asserts in the generated code: Dynamo's guards already
            # tie each compiled version to its input shapes and strides (about 0.5 µs per tensor argument)
            self._compiled = torch.compile(self.fn, dynamic=False,
                                           options={"size_asserts": False, "alignment_asserts": False})
        try:
            return self._compiled(*args, **kwargs)
        except Exception as error:  # the compiler failed, before the compiled function ran
            self._report(error)
            self.eager = self.failed = True
            return self.fn(*args, **kwargs)

    def _report(self, error: Exception) -> None:
        global _reported_failure
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        message = (f"fptt: torch.compile is unavailable here ({type(error).__name__}: {first_line}); "
                   f"{self.name} and the other fused kernels run the exact path")
        if _reported_failure:
            logger.debug(message)
        else:
            _reported_failure = True
            logger.warning(message)

    def __getstate__(self) -> dict[str, Any]:  # compiled callables do not pickle: recompile after loading
        return {"fn": self.fn, "name": self.name, "_compiled": None, "eager": self.eager, "failed": self.failed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"failed": False, **state})
