"""Element-wise analog periphery of a tile: the DAC on its inputs, the ADC on its outputs.

The operations, each with the same semantics in every backend:

* :func:`dac` -- clip to the learned input range ``r``, divide by it, quantise to
  ``step`` (``step > 0``) and clip to ``inp_bound``; optionally also count the unfolded
  input elements at or beyond the range (for the input-range decay);
* :func:`dac_mask` -- where the DAC's clip passes gradients;
* :func:`dac_backward` -- the masked input gradient divided by ``r`` and ``sum(g * x)``
  over the passed elements (for the input range's gradient);
* :func:`adc` -- add Gaussian output noise, quantise to ``step`` (``step > 0``), clip to
  ``bound``, optionally multiply by a per-channel scale;
* :func:`adc_backward` -- the masked output gradient times the scale and the scale's gradient;
* :func:`weighted_moments` -- sums of ``x`` and ``x**2`` over the unfolded input (its range's
  initialisation from data).

``passed`` marks the elements whose clip passes gradients, following ``torch.clamp``
(a value *at* a bound passes none).

Backends (``LIGHTNING_NAS_PERIPHERY=auto|eager|native|compile``, default ``auto``), one
object each in :data:`BACKEND_IMPLS` with the operations above as methods:

* ``eager`` (:mod:`.eager`) -- PyTorch operations, the reference the others are tested against;
* ``native`` (:mod:`.native`) -- one pass in C over memory with a counter-based Gaussian
  generator, for float32 CPU tensors (``lightning_nas/native/periphery.c``, built with the
  system C compiler on first use and cached); ``auto`` picks it on CPU. torch's own CPU
  ``randn`` alone costs more than a whole digital forward pass of ResNet-32, hence this kernel;
* ``compile`` (:mod:`.compiled`) -- the eager operations through ``torch.compile`` (one fused
  Triton kernel each on CUDA, noise drawn inside it); ``auto`` picks it on CUDA.

Where ``auto`` can't use its choice (no C compiler, no Triton, a dtype other than
float32) it warns once and runs ``eager``: same semantics, only slower.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, Optional

import torch
from torch import Tensor

from lightning_nas.errors import UserError
from lightning_nas.periphery.compiled import Compiled, unavailable_reason
from lightning_nas.periphery.eager import Eager, Number, clip_limit, per_channel, scalar_like
from lightning_nas.periphery.native import Native, build_native, cache_dir, native_library

__all__ = [
    "BACKENDS", "BACKEND_IMPLS", "ENV", "Number", "adc", "adc_backward", "backend_setting", "build_native",
    "cache_dir", "choose", "clip_limit", "dac", "dac_backward", "dac_mask", "native_library", "per_channel",
    "scalar_like", "using", "weighted_moments",
]

BACKENDS = ("auto", "eager", "native", "compile")
ENV = "LIGHTNING_NAS_PERIPHERY"
BACKEND_IMPLS: dict[str, Eager] = {"eager": Eager(), "native": Native(), "compile": Compiled()}

_warned: set[str] = set()


def backend_setting() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise UserError(f"{ENV}={value!r} is not a periphery backend; use one of {', '.join(BACKENDS)}")
    return value


def _fallback(reason: str) -> str:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"lightning_nas: analog periphery runs the eager PyTorch backend ({reason}); "
                      f"same semantics, slower. Set {ENV}=eager to silence this.", stacklevel=4)
    return "eager"


def choose(t: Tensor) -> str:
    """The backend that runs the periphery for tensor ``t``."""
    setting = backend_setting()
    if setting == "eager":
        return "eager"
    if setting == "compile":
        reason = unavailable_reason(t.device)
        if reason:
            raise UserError(f"{ENV}=compile: torch.compile can't run here ({reason}); use auto or eager")
        return "compile"
    if t.device.type == "cpu":
        if t.dtype != torch.float32:
            if setting == "native":
                raise UserError(f"{ENV}=native needs float32 CPU tensors, got {t.dtype} on {t.device}")
            return _fallback(f"the native kernel needs float32, got {t.dtype}")
        try:
            native_library()
        except RuntimeError as e:
            if setting == "native":
                raise UserError(f"{ENV}=native: the C kernel could not be built: {e}") from None
            return _fallback(f"the native CPU kernel could not be built: {e}")
        return "native"
    if setting == "native":
        raise UserError(f"{ENV}=native runs on CPU only; this tensor is on {t.device}")
    reason = unavailable_reason(t.device)
    return "compile" if reason is None else _fallback(reason)


@contextlib.contextmanager
def using(name: Optional[str]) -> Iterator[None]:
    """Run with the backend setting ``name`` (``None``: the current one) while the context is open."""
    saved = os.environ.get(ENV)
    if name:
        os.environ[ENV] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved


def _impl(t: Tensor, backend: Optional[str]) -> Eager:
    """The backend object for tensor ``t``: ``backend`` (a name in :data:`BACKEND_IMPLS`) or :func:`choose`'s."""
    if torch.compiler.is_compiling():  # a compiled network: Inductor fuses the eager operations into its kernels
        return BACKEND_IMPLS["eager"]
    name = backend or choose(t)
    try:
        return BACKEND_IMPLS[name]
    except KeyError:
        raise ValueError(f"no periphery backend {name!r}; use one of {', '.join(BACKEND_IMPLS)}") from None


def dac(x: Tensor, r: Tensor, step: float, inp_bound: float, counts: Optional[Tensor] = None,
        backend: Optional[str] = None) -> tuple[Tensor, Optional[Tensor]]:
    """``(out, outside)``; ``outside`` (float64, only with ``counts``) is the number of unfolded
    input elements with ``|x| >= |r|``, pixel ``(c, p)`` counting ``counts[c, p]`` times."""
    return _impl(x, backend).dac(x, r, step, inp_bound, counts)


def dac_mask(x: Tensor, r: Tensor, step: float, inp_bound: float, backend: Optional[str] = None) -> Tensor:
    """Where the DAC's clip passes gradients (``torch.clamp`` semantics)."""
    return _impl(x, backend).dac_mask(x, r, step, inp_bound)


def dac_backward(g: Tensor, x: Tensor, r: Tensor, step: float, inp_bound: float, inplace: bool = False,
                 backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """``(grad_x, sum_gx)``: ``g / r`` where the DAC passes gradients (0 elsewhere) and the sum of
    ``g * x`` over those elements. ``inplace`` lets a backend write ``grad_x`` over ``g``."""
    return _impl(g, backend).dac_backward(g, x, r, step, inp_bound, inplace)


def adc(y: Tensor, noise_std: float, step: float, bound: float, need_mask: bool, scale: Optional[Tensor] = None,
        keep_unscaled: bool = False, inplace: bool = False, backend: Optional[str] = None
        ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``(out, passed, unscaled)``. With ``keep_unscaled``, ``unscaled`` is ``out`` before the scale,
    or ``None`` where the backend recovers it from ``out`` (pass both to :func:`adc_backward`).
    ``passed`` is backend-specific (the native one packs it into bits): give it to the same
    backend's :func:`adc_backward`. ``inplace`` lets a backend write ``out`` over ``y``."""
    return _impl(y, backend).adc(y, noise_std, step, bound, need_mask, scale, keep_unscaled, inplace)


def adc_backward(g: Tensor, passed: Tensor, scale: Optional[Tensor], unscaled: Optional[Tensor] = None,
                 out: Optional[Tensor] = None, backend: Optional[str] = None) -> tuple[Tensor, Optional[Tensor]]:
    """``(grad_y, grad_scale)`` of :func:`adc`'s output; ``grad_scale`` needs ``unscaled`` or ``out``."""
    return _impl(g, backend).adc_backward(g, passed, scale, unscaled, out)


def weighted_moments(x: Tensor, counts: Tensor, backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """Float64 sums of ``x`` and ``x**2`` over an NCHW batch, pixel ``(c, p)`` of every sample
    counted ``counts[c, p]`` times (the input statistics of the unfolded matrix)."""
    return _impl(x, backend).weighted_moments(x, counts)
