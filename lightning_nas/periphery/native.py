"""The native CPU periphery: ``lightning_nas/native/periphery.c``, one pass over memory per
operation with a counter-based Gaussian generator, for float32 CPU tensors. Built with the
system C compiler on first use (:func:`build_native`) into :func:`cache_dir`, once per
source, flags and CPU model, and loaded through ctypes (:func:`native_library`)."""

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
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from lightning_nas.periphery.eager import Eager, clip_limit

# lightning_nas/native/periphery.c (package data of lightning_nas, next to this package).
_SOURCE = Path(__file__).resolve().parent.parent / "native" / "periphery.c"
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
    """The loaded kernel, built on first use; ``RuntimeError`` (every time) if it can't be built."""
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


def weighted_moments_native(x: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    x, counts = x.detach().contiguous(), counts.to(torch.float64).contiguous()
    sums = torch.empty(2, dtype=torch.float64)
    native_library().lnas_weighted_moments(x.data_ptr(), counts.data_ptr(), x.numel(), counts.numel(),
                                           sums.data_ptr(), torch.get_num_threads())
    return sums[0], sums[1]


def _unpack_bits(packed: Tensor, like: Tensor) -> Tensor:
    """The native ADC's bit mask as a bool tensor shaped like ``like`` (tests, debugging)."""
    bits = (packed.view(-1, 1) >> torch.arange(8, dtype=torch.uint8)) & 1
    return bits.view(-1)[: like.numel()].view(like.shape).bool()


class Native(Eager):
    """The C kernel for float32 CPU tensors. ``adc`` returns ``passed`` as a bit mask (one bit per
    element), which only this backend's ``adc_backward`` reads. ``dac_mask`` (needed only when
    the DAC's input bound exceeds 1) runs eager."""

    name = "native"

    def dac(self, x, r, step, inp_bound, counts=None):
        return dac_native(x, r, step, inp_bound, counts)

    def dac_backward(self, g, x, r, step, inp_bound, inplace=False):
        return dac_backward_native(g, x, r, step, inp_bound, inplace)

    def adc(self, y, noise_std, step, bound, need_mask, scale=None, keep_unscaled=False, inplace=False):
        return adc_native(y, noise_std, step, bound, need_mask, scale, keep_unscaled, inplace)

    def adc_backward(self, g, passed, scale, unscaled=None, out=None):
        return adc_backward_native(g, passed, scale, unscaled, out)

    def weighted_moments(self, x, counts):
        return weighted_moments_native(x, counts)
