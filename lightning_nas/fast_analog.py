"""Fast analog convolutions: aihwkit's torch-tile semantics computed with ``F.conv2d``.

aihwkit's ``AnalogConv2d`` unfolds every input (im2col), then runs each tile's
matrix-vector products on the unfolded matrix. With the periphery of our presets
(learned input ranges, no per-vector noise management, no iterative bound
management) every analog non-ideality is *element-wise* on the tile's input or
output, so the same computation can run as a convolution on the image:

* input: clip to the tile's learned range, divide by it, DAC-quantise;
* weights: the tile's own (normalised) weights plus the training weight noise,
  drawn by aihwkit's own ``modify_weight``;
* output: output noise, ADC quantisation, clipping to the output bound;
* then the tile's scales (input range, mapping scales, drift compensation) and
  learned output scales; partial sums of the tiles along the input dimension are
  added in digital, each quantised on its own.

Nothing is copied: every number is read from the tile and its ``rpu_config`` (the
preset object), and aihwkit's own functions do the quantisation, noise and scaling.
The layer stays an aihwkit ``AnalogConv2d`` (same tiles, same state dict), so
programming, drift and checkpoints work unchanged; ``layer.fast = False`` runs
aihwkit's unfold path.

Semantic notes (tested in ``tests/test_fast_analog.py``):

* the input-range initialisation from data uses the standard deviation over the
  *unfolded* elements (padding zeros and repeated pixels included), computed
  exactly with a box filter, as aihwkit does on the unfolded matrix;
* the input-range gradient's clipping term sums the gradient per pixel, whereas
  aihwkit sums it per unfolded element, clamped to one sign before the sum; the
  two differ only where a clipped pixel's gradients differ in sign between the
  patches that contain it. Every other gradient is the same.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from aihwkit.nn import AnalogConv2d
from aihwkit.simulator.parameters.enums import AnalogMVType, BoundManagementType, NoiseManagementType
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM
from aihwkit.simulator.tiles.array import TileModuleArray
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile
from torch import Tensor
from torch.autograd import Function

from lightning_nas.errors import UserError


def unsupported_reason(rpu_config: Any) -> Optional[str]:
    """Why the fast path can't reproduce ``rpu_config`` exactly (``None`` if it can)."""
    io = rpu_config.forward
    if hasattr(rpu_config.pre_post, "periph_quant"):
        return "quantized periphery (QuantizedTorchInferenceRPUConfig)"
    if io.is_perfect or io.mv_type == AnalogMVType.IDEAL:
        return None
    if io.mv_type != AnalogMVType.ONE_PASS:
        return f"forward.mv_type={io.mv_type.name}"
    if io.noise_management != NoiseManagementType.NONE:
        return f"forward.noise_management={io.noise_management.name} (per-input-vector scaling)"
    if io.bound_management != BoundManagementType.NONE:
        return f"forward.bound_management={io.bound_management.name}"
    if io.inp_noise > 0:
        return "forward.inp_noise > 0 (noise per unfolded element)"
    if io.inp_sto_round:
        return "forward.inp_sto_round (stochastic rounding per unfolded element)"
    if rpu_config.modifier.per_batch_sample:
        return "modifier.per_batch_sample"
    return None


def check_supported(rpu_config: Any) -> None:
    reason = unsupported_reason(rpu_config)
    if reason is not None:
        raise UserError(f"the fast analog path does not support {reason}; set analog.implementation: aihwkit "
                        "(the reference path) or change that setting")


class _InputRangeGradient(Function):
    """Identity whose backward gives the learned input range aihwkit's gradient
    (``InputRangeForward``), with the clipping percentage of the decay term taken
    over the unfolded elements (passed in as ``percentage``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, input_range: Tensor, ir_params: Any, percentage: Tensor) -> Tensor:
        ctx.save_for_backward(x, input_range, percentage)
        ctx.ir_params = ir_params
        return x

    @staticmethod
    def backward(ctx: Any, d_output: Tensor) -> tuple:
        x, input_range, percentage = ctx.saved_tensors
        p = ctx.ir_params
        ir_grad = torch.zeros_like(input_range)
        ir_grad += torch.clamp((x >= input_range) * d_output, max=0.0).sum()
        ir_grad -= torch.clamp((x <= -input_range) * d_output, min=0.0).sum()
        if p.gradient_relative:
            ir_grad *= input_range
            ir_grad *= p.gradient_scale
        if p.manage_output_clipping:
            raise NotImplementedError("input_range.manage_output_clipping")
        if p.decay > 0:
            ir_grad += p.decay * input_range * (percentage > p.input_min_percentage)
        return d_output, ir_grad, None, None


class FastAnalogConv2d(AnalogConv2d):
    """``AnalogConv2d`` whose forward runs as convolutions (see module docstring)."""

    fast: bool = True

    def forward(self, x_input: Tensor) -> Tensor:
        if not self.fast or x_input.dim() != 4:
            return super().forward(x_input)
        return analog_conv2d(self, x_input)


def _tile_grid(layer: AnalogConv2d) -> Iterator[tuple[int, int, list[tuple[Any, int, int]]]]:
    """``(in_lo, in_hi, [(tile, out_lo, out_hi), ...])`` for every row of tiles."""
    module = layer.analog_module
    if not isinstance(module, TileModuleArray):
        yield 0, layer.in_features, [(module, 0, layer.out_features)]
        return
    in_lo = 0
    for in_size, row in zip(module.in_sizes, module.array):
        out_lo, tiles = 0, []
        for out_size, tile in zip(module.out_sizes, row):
            tiles.append((tile, out_lo, out_lo + out_size))
            out_lo += out_size
        yield in_lo, in_lo + in_size, tiles
        in_lo += in_size


def analog_conv2d(layer: AnalogConv2d, x: Tensor) -> Tensor:
    if layer.groups != 1:
        raise UserError("the fast analog path supports only groups=1 convolutions; "
                        "set analog.implementation: aihwkit")
    kh, kw = layer.kernel_size
    k = kh * kw
    out: Optional[Tensor] = None
    for in_lo, in_hi, tiles in _tile_grid(layer):
        c_lo, c_hi = in_lo // k, -(-in_hi // k)
        xs = x[:, c_lo:c_hi] if (c_lo, c_hi) != (0, x.shape[1]) else x
        # Where a tile boundary cuts through a channel's kernel window, the tile's
        # weights are padded with zeros for the part of the window it doesn't hold.
        pad = (in_lo - c_lo * k, c_hi * k - in_hi)
        row = torch.cat([_tile_conv(tile, layer, xs, pad, c_hi - c_lo) for tile, _, _ in tiles], dim=1)
        out = row if out is None else out + row
    module = layer.analog_module
    bias = module.bias if isinstance(module, TileModuleArray) else None
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _conv(layer: AnalogConv2d, x: Tensor, kernel: Tensor) -> Tensor:
    return F.conv2d(x, kernel, None, layer.stride, layer.padding, layer.dilation)


def _window_mask(layer: AnalogConv2d, channels: int, pad: tuple[int, int], like: Tensor) -> Tensor:
    """A (1, channels, kh, kw) kernel of ones over the unfolded elements this tile holds."""
    kh, kw = layer.kernel_size
    mask = torch.ones(channels * kh * kw, dtype=like.dtype, device=like.device)
    mask[: pad[0]] = 0
    if pad[1]:
        mask[-pad[1]:] = 0
    return mask.view(1, channels, kh, kw)


@torch.no_grad()
def _update_input_range_from_data(tile: Any, layer: AnalogConv2d, xs: Tensor, pad: tuple[int, int]) -> None:
    """aihwkit's ``apply_input_range(update_from_data=True)`` with the std of the unfolded input."""
    params = tile.rpu_config.pre_post.input_range
    idx = tile.input_range_update_idx
    if idx < params.init_from_data:
        x64 = xs.double()
        mask = _window_mask(layer, xs.shape[1], pad, x64)
        s1 = _conv(layer, x64, mask)
        n = s1.numel() * (mask.sum().item())
        total = s1.sum()
        var = ((_conv(layer, x64 * x64, mask).sum() - total * total / n) / max(n - 1, 1)).clamp_min(0)
        std = var.sqrt().to(xs.dtype)
        if std > 0.0:
            tile.input_range.data = (tile.input_range.data * idx + params.init_std_alpha * std) / (idx + 1)
            tile.input_range_update_idx.data += 1
        tile.input_range.data = tile.input_range.data.abs()


@torch.no_grad()
def _unfolded_in_range_fraction(layer: AnalogConv2d, xs: Tensor, pad: tuple[int, int], bound: Tensor) -> Tensor:
    """Fraction of the unfolded input elements with ``|x| < bound`` (padding zeros count as inside)."""
    outside = (xs.abs() >= bound).to(xs.dtype)
    mask = _window_mask(layer, xs.shape[1], pad, xs)
    counts = _conv(layer, outside, mask)
    n = counts.numel() * mask.sum()
    return 1.0 - counts.sum() / n


def _tile_conv(tile: Any, layer: AnalogConv2d, xs: Tensor, pad: tuple[int, int], channels: int) -> Tensor:
    rpu = tile.rpu_config
    io = rpu.forward
    is_test = not tile.training
    # -- pre_forward (TorchInferenceTile): learned input range -----------------------------
    r = tile.input_range
    if r is not None:
        if not is_test:
            _update_input_range_from_data(tile, layer, xs, pad)
        bound = abs(r.item())
        xs = torch.clamp(xs, min=-bound, max=bound)
        ir = rpu.pre_post.input_range
        if torch.is_grad_enabled() and (r.requires_grad or xs.requires_grad):
            percentage = (_unfolded_in_range_fraction(layer, xs, pad, r.detach()) if ir.decay > 0
                          else xs.new_zeros(()))
            xs = _InputRangeGradient.apply(xs, r, ir, percentage)
        xs = xs / r
    # -- the analog MVM (TorchSimulatorTile.forward + AnalogMVM.matmul) ---------------------
    weight = tile.tile.weight
    if not is_test:
        weight = TorchSimulatorTile.modify_weight(weight, rpu.modifier, xs.shape[0])
    kernel = F.pad(weight, pad) if pad != (0, 0) else weight
    kernel = kernel.reshape(weight.shape[0], channels, *layer.kernel_size)
    if io.is_perfect or io.mv_type == AnalogMVType.IDEAL:
        y = _conv(layer, xs, kernel)
    else:
        xq = AnalogMVM._prepare_input(xs, scale=1.0, scaling=False,
                                      with_asymmetry=io.inp_asymmetry != 0.0, io_pars=io)
        y = _conv(layer, xq, kernel)
        _, y = AnalogMVM._finalize_output(y, io, out_noise_values=tile.tile.out_noise_values)
        if io.out_scale != 1.0:
            y = y * io.out_scale
    # -- post_forward: input range, mapping scales, drift compensation; learned out scales ---
    y = tile.post_forward(y, 1, is_test)
    y = tile.apply_out_scaling(y, (1, -1, 1, 1))
    if tile.digital_bias and tile.bias is not None:
        y = y + tile.bias.view(1, -1, 1, 1)
    return y
