"""The eager PyTorch periphery: the reference the native and compiled backends are tested
against, and the helpers every backend shares (``clip_limit``, ``per_channel``, ``scalar_like``).

The numbers (step, bounds, noise std) may be floats or 0-d tensors (the compiled backend
passes tensors: torch.compile would otherwise specialise on them or trace them as symbolic
floats); the flags that choose a branch are always Python bools. ``lim`` is a clip limit in
units of the quantisation step, computed once in Python (double precision) by
:func:`clip_limit` so that every backend compares against the same float32 value.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

Number = Union[float, Tensor]


def clip_limit(bound: float, step: float) -> float:
    """The clip limit in quantisation steps (``bound`` itself without quantisation)."""
    return bound / step if step > 0 else bound


def per_channel(scale: Tensor, like: Tensor) -> Tensor:
    """``scale`` (one value per channel, dimension 1 of ``like``, or a single value) shaped to broadcast."""
    return scale.view(1, -1, *([1] * (like.dim() - 2))) if scale.numel() > 1 else scale


_scalars: dict[tuple, Tensor] = {}


def scalar_like(value: float, like: Tensor) -> Tensor:
    """A cached 0-d tensor holding ``value`` on ``like``'s device (no host-to-device copy per call)."""
    key = (value, like.device, like.dtype)
    if key not in _scalars:
        with torch.inference_mode(False):  # a cached inference tensor could not be saved for backward later
            _scalars[key] = torch.tensor(value, device=like.device, dtype=like.dtype)
    return _scalars[key]


# -- the operations, flags explicit (also what the compiled backend compiles) -------------------

def _dac(x: Tensor, r: Tensor, step: Number, inp_bound: Number, quantise: bool, clip: bool,
         counts: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    bound = r.abs()
    y = torch.clamp(x, -bound, bound) / r
    if quantise:
        y = torch.round(y / step) * step
    if clip:  # inp_bound < 1; otherwise |y| <= 1 already
        y = torch.clamp(y, -inp_bound, inp_bound)
    outside = None
    if counts is not None:  # counts: (C, H*W) unfolded copies of each pixel
        outside = ((x.abs() >= bound).sum(0, dtype=torch.float64).flatten(1) * counts).sum()
    return y, outside


def _dac_mask(x: Tensor, r: Tensor, step: Number, lim: Number, quantise: bool) -> Tensor:
    """Where the DAC's clip passes gradients (recomputed from the input: nothing is stored)."""
    bound = r.abs()
    y = torch.clamp(x, -bound, bound) / r
    return torch.round(y / step).abs() < lim if quantise else y.abs() < lim


def _dac_backward(g: Tensor, x: Tensor, r: Tensor, step: Number, lim: Number, quantise: bool) -> tuple[Tensor, Tensor]:
    gm = torch.where(_dac_mask(x, r, step, lim, quantise), g, 0.0)
    return gm / r, (gm * x).sum()


def _adc(y: Tensor, noise_std: Number, step: Number, lim: Number, noisy: bool, quantise: bool, need_mask: bool,
         scale: Optional[Tensor], keep_unscaled: bool) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    out = y + torch.randn_like(y) * noise_std if noisy else y
    if quantise:
        out = torch.round(out / step)
    passed = out.abs() < lim if need_mask else None
    out = torch.clamp(out, -lim, lim)
    if quantise:
        out = out * step
    unscaled = out if keep_unscaled else None
    if scale is not None:
        out = out * per_channel(scale, out)
    return out, passed, unscaled


def _adc_backward(g: Tensor, passed: Tensor, scale: Optional[Tensor], unscaled: Optional[Tensor],
                  out: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    if scale is None:
        return torch.where(passed, g, 0.0), None
    s = per_channel(scale, g)
    grad_y = torch.where(passed, g * s, 0.0)
    if unscaled is None and out is None:
        return grad_y, None
    gq = g * unscaled if unscaled is not None else g * out / s
    grad_scale = gq.sum() if scale.numel() == 1 else gq.sum([d for d in range(g.dim()) if d != 1])
    return grad_y, grad_scale.reshape(scale.shape)


def _weighted_moments(x: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    x64 = x.detach().double()
    return (x64.sum(0).flatten(1) * counts).sum(), ((x64 * x64).sum(0).flatten(1) * counts).sum()


class Eager:
    """The operations every backend offers, as PyTorch operations (any device and dtype).

    The other backends subclass it and override what they run themselves, so a backend that
    has no kernel of its own for an operation runs this one. Arguments and results are those
    of the public functions in :mod:`lightning_nas.periphery`; ``inplace`` only permits
    writing the result over the input, which this backend never does.
    """

    name = "eager"

    def dac(self, x: Tensor, r: Tensor, step: float, inp_bound: float,
            counts: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        return _dac(x, r, step, inp_bound, step > 0, inp_bound < 1.0, counts)

    def dac_mask(self, x: Tensor, r: Tensor, step: float, inp_bound: float) -> Tensor:
        return _dac_mask(x, r, step, clip_limit(inp_bound, step), step > 0)

    def dac_backward(self, g: Tensor, x: Tensor, r: Tensor, step: float, inp_bound: float,
                     inplace: bool = False) -> tuple[Tensor, Tensor]:
        return _dac_backward(g, x, r, step, clip_limit(inp_bound, step), step > 0)

    def adc(self, y: Tensor, noise_std: float, step: float, bound: float, need_mask: bool,
            scale: Optional[Tensor] = None, keep_unscaled: bool = False,
            inplace: bool = False) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        return _adc(y, noise_std, step, clip_limit(bound, step), noise_std > 0, step > 0, need_mask, scale,
                    keep_unscaled)

    def adc_backward(self, g: Tensor, passed: Tensor, scale: Optional[Tensor], unscaled: Optional[Tensor] = None,
                     out: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        return _adc_backward(g, passed, scale, unscaled, out)

    def weighted_moments(self, x: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        return _weighted_moments(x, counts)
