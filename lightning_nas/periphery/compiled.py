"""The periphery through ``torch.compile``: the eager operations (:mod:`.eager`) compiled by
Inductor, one fused kernel per operation (Triton on CUDA, the noise drawn inside it;
C++/OpenMP on CPU).

Each configuration compiles once. Dynamo keeps the graphs it compiled for a function in
a cache on the function's code object and gives up on that code object after
``torch._dynamo.config.recompile_limit`` (8) recompilations (with ``fullgraph=True``: an
error). A training run calls each operation in many variants that dynamo specialises on:
flags and ``None`` arguments (with and without the decay counts, a per-channel or a
single scale), inputs with and without ``requires_grad``, inference tensors (validation),
sizes of 1 (a one-channel first layer), views with a storage offset (the channel slices
of a split layer), and equal sizes (duck sizing gives a batch of 64 and an 8x8 plane one
symbol and guards that they stay equal). Sharing one code object, a ResNet on digits hit
the limit in its first epoch. So :func:`_run`

* detaches the tensors, makes them contiguous (as the native backend does) and runs
  without grad (the backends work outside autograd),
* is given tensors flattened to the fewest dimensions the operation needs (1-D for the
  element-wise ones, ``(N, C, H*W)`` for a per-channel scale, ``(N, 1, C*H*W)`` with the counts),
* compiles with dynamic shapes and without duck sizing, and
* keys the compiled functions by everything dynamo still specialises on (:func:`_signature`),
  each key compiling its own copy of the function (its own code object, so its own cache).

Each key then compiles once whatever the layer shapes and batch sizes, or twice where
Inductor chooses how to run a sum by its size (on CPU: up to 4096 elements or more), well
under the limit.
"""

from __future__ import annotations

import math
import types
from typing import Any, Callable, Optional

import torch
import torch.fx.experimental._config as shape_config
from torch import Tensor

from lightning_nas.periphery.eager import (Eager, _adc, _adc_backward, _dac, _dac_backward, _dac_mask, clip_limit,
                                           scalar_like)

_compiled: dict[tuple, Callable] = {}  # _signature key -> compiled function


def unavailable_reason(device: torch.device) -> Optional[str]:
    """Why ``torch.compile`` can't be used on ``device`` (``None`` if it can)."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    if device.type == "cpu":
        return None
    return f"device {device.type}"


def _signature(value: Any) -> Any:
    """What a compiled graph is specialised on, for one argument: a flag or ``None`` itself; for
    a tensor its dtype, device, inference-ness, which sizes are 0, 1 or more, and whether its
    storage offset is 0, 1 or more (sizes and offsets are otherwise symbolic)."""
    if isinstance(value, Tensor):
        return (value.dtype, value.device, value.is_inference(), tuple(min(s, 2) for s in value.shape),
                min(value.storage_offset(), 2))
    return value


def _own_copy(fn: Callable, tag: int) -> Callable:
    """``fn`` with a code object of its own (dynamo caches per code object)."""
    name = f"{fn.__name__}_{tag}"
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _run(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` compiled, once per :func:`_signature` of the arguments."""
    args = tuple(a.detach().contiguous() if isinstance(a, Tensor) else a for a in args)
    key = (fn.__name__, torch.is_inference_mode_enabled(), *map(_signature, args))
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compiled[key] = torch.compile(_own_copy(fn, len(_compiled)), dynamic=True, fullgraph=True)
    with torch.no_grad(), shape_config.patch(use_duck_shape=False):
        return compiled(*args)


def _flat(t: Optional[Tensor], scale: Optional[Tensor]) -> Optional[Tensor]:
    """NCHW ``t`` as ``(N, C, H*W)`` for a per-channel ``scale``, else 1-D."""
    if t is None:
        return None
    if scale is not None and scale.numel() > 1:
        return t.reshape(t.shape[0], t.shape[1], math.prod(t.shape[2:]))
    return t.reshape(-1)


def _like(t: Optional[Tensor], like: Tensor) -> Optional[Tensor]:
    return t.reshape(like.shape) if t is not None else None


class Compiled(Eager):
    """The eager operations through ``torch.compile``; numbers travel as cached 0-d tensors
    (:func:`scalar_like`), so new values don't recompile. ``weighted_moments`` runs eager."""

    name = "compile"

    def dac(self, x, r, step, inp_bound, counts=None):
        args = (r, scalar_like(step, x), scalar_like(inp_bound, x), step > 0, inp_bound < 1.0)
        if counts is None:
            out, outside = _run(_dac, x.reshape(-1), *args, None)
        else:  # each pixel (column of the one row) counted counts[i] times
            out, outside = _run(_dac, x.reshape(x.shape[0], 1, counts.numel()), *args, counts.reshape(1, -1))
        return out.reshape(x.shape), outside

    def dac_mask(self, x, r, step, inp_bound):
        lim = clip_limit(inp_bound, step)
        return _run(_dac_mask, x.reshape(-1), r, scalar_like(step, x), scalar_like(lim, x), step > 0).reshape(x.shape)

    def dac_backward(self, g, x, r, step, inp_bound, inplace=False):
        lim = clip_limit(inp_bound, step)
        grad_x, total = _run(_dac_backward, g.reshape(-1), x.reshape(-1), r, scalar_like(step, x),
                             scalar_like(lim, x), step > 0)
        return grad_x.reshape(g.shape), total

    def adc(self, y, noise_std, step, bound, need_mask, scale=None, keep_unscaled=False, inplace=False):
        lim = clip_limit(bound, step)
        out, passed, unscaled = _run(_adc, _flat(y, scale), scalar_like(noise_std, y), scalar_like(step, y),
                                     scalar_like(lim, y), noise_std > 0, step > 0, need_mask, scale, keep_unscaled)
        return out.reshape(y.shape), _like(passed, y), _like(unscaled, y)

    def adc_backward(self, g, passed, scale, unscaled=None, out=None):
        grad_y, grad_scale = _run(_adc_backward, _flat(g, scale), _flat(passed, scale), scale, _flat(unscaled, scale),
                                  _flat(out, scale))
        return grad_y.reshape(g.shape), grad_scale
