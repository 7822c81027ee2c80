"""Element-wise analog periphery of a tile: the DAC on its inputs, the ADC on its outputs.

Four operations, each with the same semantics in every backend:

* :func:`dac` -- clip to the learned input range ``r``, divide by it, quantise to
  ``step`` (``step > 0``) and clip to ``inp_bound``; optionally also count the unfolded
  input elements at or beyond the range (for the input-range decay);
* :func:`dac_backward` -- the masked input gradient divided by ``r`` and ``sum(g * x)``
  over the passed elements (for the input range's gradient);
* :func:`adc` -- add Gaussian output noise, quantise to ``step`` (``step > 0``), clip to
  ``bound``, optionally multiply by a per-channel scale;
* :func:`adc_backward` -- the masked output gradient times the scale and the scale's gradient.

``passed`` marks the elements whose clip passes gradients, following ``torch.clamp``
(a value *at* a bound passes none).

Backends (``LIGHTNING_NAS_PERIPHERY=auto|eager|native|compile``, default ``auto``):

* ``eager`` -- PyTorch operations, the reference the others are tested against;
* ``native`` -- one pass in C over memory with a counter-based Gaussian generator, for
  float32 CPU tensors (``native/periphery.c``, built with the system C compiler on first
  use and cached); ``auto`` picks it on CPU. torch's own CPU ``randn`` alone costs more
  than a whole digital forward pass of ResNet-32, hence this kernel;
* ``compile`` -- the eager functions through ``torch.compile`` (one fused Triton kernel
  each, noise drawn inside it); ``auto`` picks it on CUDA.

Where ``auto`` can't use its choice (no C compiler, no Triton, a dtype other than
float32) it warns once and runs ``eager``: same semantics, only slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from lightning_nas.errors import UserError

BACKENDS = ("auto", "eager", "native", "compile")
ENV = "LIGHTNING_NAS_PERIPHERY"


# -- eager reference -----------------------------------------------------------------------
# The numbers (step, bounds, noise std) may be floats or 0-d tensors (the compiled backend
# passes tensors: torch.compile would otherwise specialise or trace them as symbolic floats);
# the flags that choose a branch are always Python bools. ``lim`` is a clip limit in units
# of the quantisation step, computed once in Python (double precision) by ``clip_limit`` so
# that every backend compares against the same float32 value.
Number = Union[float, Tensor]


def clip_limit(bound: float, step: float) -> float:
    return bound / step if step > 0 else bound


def _dac(x: Tensor, r: Tensor, step: Number, inp_bound: Number, quantise: bool, clip: bool,
         counts: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    bound = r.abs()
    y = torch.clamp(x, -bound, bound) / r
    if quantise:
        y = torch.round(y / step) * step
    if clip:  # inp_bound < 1; otherwise |x1 / r| <= 1 already
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


def per_channel(scale: Tensor, like: Tensor) -> Tensor:
    return scale.view(1, -1, *([1] * (like.dim() - 2))) if scale.numel() > 1 else scale


# -- native CPU kernel -----------------------------------------------------------------------
_SOURCE = Path(__file__).with_name("native") / "periphery.c"
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC"]
_lib: Optional[ctypes.CDLL] = None
_lib_error: Optional[str] = None


def cache_dir() -> Path:
    root = os.environ.get("LIGHTNING_NAS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lightning_nas")
    return Path(root)


def _cpu_tag() -> str:
    """Host CPU identity: ``-march=native`` code must not run on another CPU model."""
    try:
        with open("/proc/cpuinfo") as f:
            info = "".join(line for line in f if line.startswith(
                ("model name", "flags", "Features", "CPU implementer", "CPU architecture", "CPU variant", "CPU part")))
    except OSError:
        info = platform.processor()
    return info + platform.machine() + platform.system()


def build_native() -> Path:
    """Compile ``native/periphery.c`` into the cache (once per source, flags and CPU model)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise RuntimeError("no C compiler found (set CC or install gcc/clang)")
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(_FLAGS).encode() + _cpu_tag().encode()).hexdigest()[:16]
    target = cache_dir() / f"periphery-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)  # several processes may build at once
    os.close(fd)
    cmd = [*shlex.split(compiler), *_FLAGS, str(_SOURCE), "-o", tmp, "-lm"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        os.unlink(tmp)
        raise RuntimeError(f"C compiler {compiler!r} can't run ({e.strerror}); set CC or install gcc/clang") from None
    if done.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[:500]}")
    os.chmod(tmp, 0o755)  # mkstemp made it private; a shared cache must be loadable by others
    os.replace(tmp, target)
    return target


def native_library() -> ctypes.CDLL:
    global _lib, _lib_error
    if _lib is None and _lib_error is None:
        try:
            lib = ctypes.CDLL(str(build_native()))
        except (RuntimeError, OSError) as e:
            _lib_error = str(e)
        else:
            p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
            lib.lnas_dac.argtypes = [p, p, i64, f32, f32, f32, p, i64, i32]
            lib.lnas_dac.restype = ctypes.c_double
            lib.lnas_dac_backward.argtypes = [p, p, p, i64, f32, f32, f32, i32]
            lib.lnas_dac_backward.restype = ctypes.c_double
            lib.lnas_adc.argtypes = [p, p, p, p, i64, f32, f32, f32, ctypes.c_uint64, p, i64, i64, i32]
            lib.lnas_adc.restype = None
            lib.lnas_adc_backward.argtypes = [p, p, p, p, p, p, p, i64, i64, i64, i32]
            lib.lnas_adc_backward.restype = None
            lib.lnas_weighted_moments.argtypes = [p, p, i64, i64, p, i32]
            lib.lnas_weighted_moments.restype = None
            _lib = lib
    if _lib is None:
        raise RuntimeError(_lib_error)
    return _lib




def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return t.data_ptr() if t is not None else None


def _planes(t: Tensor, scale: Tensor) -> tuple[int, int]:
    """(channels, plane) of NCHW ``t`` for a per-channel (or scalar) ``scale``; plane >= 1."""
    if scale.numel() == 1:
        return 1, max(math.prod(t.shape[1:]), 1)
    return t.shape[1], max(math.prod(t.shape[2:]), 1)


def dac_native(x: Tensor, r: Tensor, step: float, inp_bound: float,
               counts: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
    x = x.contiguous()
    out = torch.empty_like(x)
    if counts is not None:
        counts = counts.to(torch.float64).contiguous()
    outside = native_library().lnas_dac(x.data_ptr(), out.data_ptr(), x.numel(), float(r), step, inp_bound,
                                        _ptr(counts), counts.numel() if counts is not None else 1,
                                        torch.get_num_threads())
    return out, (torch.tensor(outside, dtype=torch.float64) if counts is not None else None)


def dac_backward_native(g: Tensor, x: Tensor, r: Tensor, step: float, inp_bound: float,
                        inplace: bool = False) -> tuple[Tensor, Tensor]:
    inplace = inplace and g.is_contiguous()
    g, x = g.contiguous(), x.contiguous()
    grad_x = g if inplace else torch.empty_like(g)
    total = native_library().lnas_dac_backward(g.data_ptr(), x.data_ptr(), grad_x.data_ptr(), g.numel(), float(r),
                                               step, clip_limit(inp_bound, step), torch.get_num_threads())
    return grad_x, torch.tensor(total, dtype=g.dtype)


def adc_native(y: Tensor, noise_std: float, step: float, bound: float, need_mask: bool,
               scale: Optional[Tensor] = None, keep_unscaled: bool = False,
               inplace: bool = False) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    inplace = inplace and y.is_contiguous()
    y = y.contiguous()
    out = y if inplace else torch.empty_like(y)
    passed = torch.empty((y.numel() + 7) // 8, dtype=torch.uint8) if need_mask else None  # one bit each
    channels = plane = 1
    if scale is not None:
        channels, plane = _planes(y, scale)
        scale = scale.detach().float().reshape(-1).contiguous()
    # The backward recovers the unscaled output as out / scale; only a zero scale needs a copy.
    unscaled = torch.empty_like(y) if keep_unscaled and scale is not None and bool((scale == 0).any()) else None
    # One draw from torch's default generator: torch.manual_seed reproduces the noise.
    seed = int(torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64)) & (2 ** 64 - 1) if noise_std > 0 else 0
    native_library().lnas_adc(y.data_ptr(), out.data_ptr(), _ptr(unscaled), _ptr(passed), y.numel(), noise_std,
                              step, clip_limit(bound, step), seed, _ptr(scale), channels, plane, torch.get_num_threads())
    if keep_unscaled and scale is None:
        unscaled = out
    return out, passed, unscaled


def adc_backward_native(g: Tensor, passed: Tensor, scale: Optional[Tensor], unscaled: Optional[Tensor],
                        out: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    g = g.contiguous()
    wants_scale_grad = scale is not None and (unscaled is not None or out is not None)
    if scale is None:
        scale = g.new_ones(())
    channels, plane = _planes(g, scale)
    grad_y = torch.empty_like(g)
    grad_scale = torch.empty(channels, dtype=torch.float64)
    out = out.contiguous() if unscaled is None and out is not None else None
    scale_values = scale.detach().float().reshape(-1).contiguous()
    native_library().lnas_adc_backward(g.data_ptr(), passed.data_ptr(), _ptr(unscaled), _ptr(out),
                                       scale_values.data_ptr(),
                                       grad_y.data_ptr(), grad_scale.data_ptr(), g.numel(), channels, plane,
                                       torch.get_num_threads())
    return grad_y, (grad_scale.to(g.dtype).reshape(scale.shape) if wants_scale_grad else None)


def _unpack_bits(packed: Tensor, like: Tensor) -> Tensor:
    """The native ADC's bit mask as a bool tensor shaped like ``like`` (tests, debugging)."""
    bits = (packed.view(-1, 1) >> torch.arange(8, dtype=torch.uint8)) & 1
    return bits.view(-1)[: like.numel()].view(like.shape).bool()


# -- torch.compile (CUDA) ----------------------------------------------------------------------
_compiled: dict[str, Callable] = {}
_scalars: dict[tuple, Tensor] = {}


def scalar_like(value: float, like: Tensor) -> Tensor:
    """A cached 0-d tensor holding ``value`` on ``like``'s device (no host-to-device copy per call)."""
    key = (value, like.device, like.dtype)
    if key not in _scalars:
        with torch.inference_mode(False):  # a cached inference tensor could not be saved for backward later
            _scalars[key] = torch.tensor(value, device=like.device, dtype=like.dtype)
    return _scalars[key]


def _compiled_fn(name: str) -> Callable:
    if name not in _compiled:
        fn = {"dac": _dac, "dac_mask": _dac_mask, "dac_backward": _dac_backward, "adc": _adc,
              "adc_backward": _adc_backward}[name]
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _compiled[name]


def _compile_available(device: torch.device) -> Optional[str]:
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


# -- dispatch ------------------------------------------------------------------------------------
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
                      f"same semantics, slower. Set {ENV}=eager to silence this.", stacklevel=3)
    return "eager"


def choose(t: Tensor) -> str:
    """The backend that runs the periphery for tensor ``t``."""
    setting = backend_setting()
    if setting == "eager":
        return "eager"
    if setting == "compile":
        reason = _compile_available(t.device)
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
    reason = _compile_available(t.device)
    return "compile" if reason is None else _fallback(reason)


def dac(x: Tensor, r: Tensor, step: float, inp_bound: float, counts: Optional[Tensor] = None,
        backend: Optional[str] = None) -> tuple[Tensor, Optional[Tensor]]:
    """``(out, outside)``; ``outside`` (float64, only with ``counts``) is the number of unfolded
    input elements with ``|x| >= |r|``, pixel ``(c, p)`` counting ``counts[c, p]`` times."""
    backend = backend or choose(x)
    if backend == "native":
        return dac_native(x, r, step, inp_bound, counts)
    if backend == "compile":
        return _compiled_fn("dac")(x, r, scalar_like(step, x), scalar_like(inp_bound, x), step > 0, inp_bound < 1.0, counts)
    return _dac(x, r, step, inp_bound, step > 0, inp_bound < 1.0, counts)


def dac_mask(x: Tensor, r: Tensor, step: float, inp_bound: float, backend: Optional[str] = None) -> Tensor:
    """Where the DAC's clip passes gradients (``torch.clamp`` semantics)."""
    lim = clip_limit(inp_bound, step)
    if (backend or choose(x)) == "compile":
        return _compiled_fn("dac_mask")(x, r, scalar_like(step, x), scalar_like(lim, x), step > 0)
    return _dac_mask(x, r, step, lim, step > 0)


def dac_backward(g: Tensor, x: Tensor, r: Tensor, step: float, inp_bound: float, inplace: bool = False,
                 backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """``(grad_x, sum_gx)``: ``g / r`` where the DAC passes gradients (0 elsewhere) and the sum of
    ``g * x`` over those elements. ``inplace`` lets a backend write ``grad_x`` over ``g``."""
    backend = backend or choose(g)
    if backend == "native":
        return dac_backward_native(g, x, r, step, inp_bound, inplace)
    lim = clip_limit(inp_bound, step)
    if backend == "compile":
        return _compiled_fn("dac_backward")(g, x, r, scalar_like(step, x), scalar_like(lim, x), step > 0)
    return _dac_backward(g, x, r, step, lim, step > 0)


def adc(y: Tensor, noise_std: float, step: float, bound: float, need_mask: bool, scale: Optional[Tensor] = None,
        keep_unscaled: bool = False, inplace: bool = False, backend: Optional[str] = None
        ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``(out, passed, unscaled)``. With ``keep_unscaled``, ``unscaled`` is ``out`` before the scale,
    or ``None`` where the backend recovers it from ``out`` (pass both to :func:`adc_backward`).
    ``inplace`` lets a backend write ``out`` over ``y``."""
    backend = backend or choose(y)
    if backend == "native":
        return adc_native(y, noise_std, step, bound, need_mask, scale, keep_unscaled, inplace)
    lim = clip_limit(bound, step)
    if backend == "compile":
        return _compiled_fn("adc")(y, scalar_like(noise_std, y), scalar_like(step, y), scalar_like(lim, y), noise_std > 0,
                                   step > 0, need_mask, scale, keep_unscaled)
    return _adc(y, noise_std, step, lim, noise_std > 0, step > 0, need_mask, scale, keep_unscaled)


def weighted_moments(x: Tensor, counts: Tensor, backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """Float64 sums of ``x`` and ``x**2`` over an NCHW batch, pixel ``(c, p)`` of every sample
    counted ``counts[c, p]`` times (the input statistics of the unfolded matrix)."""
    backend = backend or choose(x)
    if backend == "native":
        x, counts = x.detach().contiguous(), counts.to(torch.float64).contiguous()
        sums = torch.empty(2, dtype=torch.float64)
        native_library().lnas_weighted_moments(x.data_ptr(), counts.data_ptr(), x.numel(), counts.numel(),
                                               sums.data_ptr(), torch.get_num_threads())
        return sums[0], sums[1]
    x64 = x.detach().double()
    return (x64.sum(0).flatten(1) * counts).sum(), ((x64 * x64).sum(0).flatten(1) * counts).sum()


def adc_backward(g: Tensor, passed: Tensor, scale: Optional[Tensor], unscaled: Optional[Tensor] = None,
                 out: Optional[Tensor] = None, backend: Optional[str] = None) -> tuple[Tensor, Optional[Tensor]]:
    """``(grad_y, grad_scale)`` of :func:`adc`'s output; ``grad_scale`` needs ``unscaled`` or ``out``."""
    backend = backend or choose(g)
    if backend == "native":
        return adc_backward_native(g, passed, scale, unscaled, out)
    if backend == "compile":
        return _compiled_fn("adc_backward")(g, passed, scale, unscaled, out)
    return _adc_backward(g, passed, scale, unscaled, out)
