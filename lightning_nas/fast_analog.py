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
preset object); the weight noise is aihwkit's own ``modify_weight``; the element-wise
DAC/ADC run in :mod:`lightning_nas.periphery` (native C on CPU, ``torch.compile`` on
CUDA, eager PyTorch as the reference), fused with the scales and the masks' gradients.
The layer stays an aihwkit ``AnalogConv2d`` (same tiles, same state dict), so
programming, drift and checkpoints work unchanged; ``layer.fast = False`` runs
aihwkit's unfold path.

Semantic notes (tested in ``tests/test_fast_analog.py``):

* the input-range initialisation from data uses the standard deviation over the
  *unfolded* elements (padding zeros and repeated pixels included), computed
  exactly with a box filter, as aihwkit does on the unfolded matrix;
* gradients are aihwkit's: straight-through quantisation, the clip masks of
  ``torch.clamp`` (no gradient *at* a bound, so an input clipped to its range, which
  the DAC sees as exactly +-1, passes none), the division by the input range and
  ``InputRangeForward``'s clipping and decay terms. One difference remains, only
  when ``forward.inp_bound > 1``: the clipping term then sums the gradient per pixel,
  where aihwkit sums it per unfolded element, clamped to one sign first.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from aihwkit.nn import AnalogConv2d, AnalogLinear
from aihwkit.nn.modules.base import AnalogLayerBase
from aihwkit.simulator.parameters.enums import AnalogMVType, BoundManagementType, NoiseManagementType
from aihwkit.simulator.tiles.array import TileModuleArray
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from lightning_nas import periphery
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
    if not rpu_config.pre_post.input_range.enable:
        return "a periphery without learned input ranges (pre_post.input_range.enable=false)"
    if io.out_noise_std > 0:
        return "forward.out_noise_std > 0 (per-column output-noise levels)"
    if io.inp_noise > 0:
        return "forward.inp_noise > 0 (noise per unfolded element)"
    if io.inp_sto_round or io.out_sto_round:
        return "forward.inp_sto_round/out_sto_round (stochastic rounding)"
    if io.inp_asymmetry or io.out_asymmetry:
        return "forward.inp_asymmetry/out_asymmetry"
    if getattr(rpu_config, "handle_output_bound", False):
        return "output-bound gradient handling"
    if rpu_config.modifier.per_batch_sample:
        return "modifier.per_batch_sample"
    return None


def check_supported(rpu_config: Any) -> None:
    periphery.backend_setting()  # a bad LIGHTNING_NAS_PERIPHERY fails when the model is built
    reason = unsupported_reason(rpu_config)
    if reason is not None:
        raise UserError(f"the fast analog path does not support {reason}; set analog.implementation: aihwkit "
                        "(the reference path) or change that setting")


class _DAC(Function):
    """The tile's input path with aihwkit's gradients: straight-through quantisation, the
    clip masks, the division by the learned input range and ``InputRangeForward``'s
    clipping and decay terms. With ``counts`` (the input-range decay is on) the forward also
    measures the fraction of unfolded inputs inside the range, which gates the decay."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, r: Tensor, step: float, inp_bound: float, ir_params: Any,
                counts: Optional[Tensor], n_unfolded: int) -> Tensor:
        out, outside = periphery.dac(x, r, step, inp_bound, counts=counts)
        percentage = (1.0 - outside / n_unfolded).to(x.dtype) if outside is not None else x.new_zeros(())
        ctx.save_for_backward(x, r, percentage)  # the clip mask is recomputed from x
        ctx.args = (step, inp_bound, ir_params)
        return out

    @staticmethod
    @once_differentiable  # the backends compute gradients outside autograd: no double backward
    def backward(ctx: Any, g: Tensor) -> tuple:
        x, r, percentage = ctx.saved_tensors
        step, inp_bound, p = ctx.args
        if p.manage_output_clipping:
            raise NotImplementedError("input_range.manage_output_clipping")
        if inp_bound <= 1.0:
            # An input at or beyond its range reaches the DAC as +-1 (or rounds to it) and
            # passes no gradient, so passed elements are unclipped (x1 == x) and
            # InputRangeForward's clipping term is zero.
            # g is the gradient the tile's convolution computed for its input, which feeds
            # nothing else: it may be overwritten.
            grad_x, sum_gx = periphery.dac_backward(g, x, r, step, inp_bound, inplace=True)
            grad_r = -sum_gx / (r * r)
        else:
            gm = torch.where(periphery.dac_mask(x, r, step, inp_bound), g, 0.0)
            bound = r.abs()
            x1 = torch.clamp(x, -bound, bound)
            grad_r = -(gm * x1).sum() / (r * r)
            g2 = gm / r
            clip = torch.clamp((x1 >= r) * g2, max=0.0).sum() - torch.clamp((x1 <= -r) * g2, min=0.0).sum()
            if p.gradient_relative:
                clip = clip * r * p.gradient_scale
            grad_r = grad_r + clip
            grad_x = torch.where((x > -bound) & (x < bound), g2, 0.0)
        if p.decay > 0:
            grad_r = grad_r + p.decay * r * (percentage > p.input_min_percentage)
        return grad_x, grad_r, None, None, None, None, None


class _ADC(Function):
    """Output noise, ADC quantisation and clipping (straight-through inside the bound), then
    the tile's output scales (``scale``, per channel or scalar, may be learned)."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, scale: Optional[Tensor], noise_std: float, step: float, bound: float) -> Tensor:
        keep = scale is not None and ctx.needs_input_grad[1]
        # In place over the convolution's output where the backend can (nothing else holds it).
        out, passed, unscaled = periphery.adc(y, noise_std, step, bound, need_mask=True, scale=scale,
                                              keep_unscaled=keep, inplace=True)
        if out is y:
            ctx.mark_dirty(y)
        ctx.save_for_backward(passed, scale, unscaled, out if keep and unscaled is None else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple:
        passed, scale, unscaled, out = ctx.saved_tensors
        grad_y, grad_scale = periphery.adc_backward(g, passed, scale, unscaled, out)
        return grad_y, grad_scale, None, None, None


class _ScaleWeightGrad(Function):
    """Identity on the tile's weights whose backward divides the gradient by the mapping scales
    squared: aihwkit's weight-gradient hook (``TorchInferenceTile.set_scales``) as part of the
    graph, reading the scales from the tile's buffer on the weights' device (aihwkit's hook holds
    the scales it was registered with, a CPU tensor after the model moves: a host-to-device copy
    in every backward). :func:`take_over_weight_hooks` removes aihwkit's hook."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, scales: Tensor) -> Tensor:
        ctx.save_for_backward(scales)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        (scales,) = ctx.saved_tensors
        return g / (scales.view(-1, 1) * scales.view(-1, 1)), None


class FastAnalogConv2d(AnalogConv2d):
    """``AnalogConv2d`` whose forward runs as convolutions (see module docstring).

    With the native CPU periphery the output is written in place and saved for the
    backward, so modifying it in place (e.g. ``relu_`` right after a bias-free layer) makes
    autograd raise its in-place error; double backward is refused (``once_differentiable``).
    """

    fast: bool = True

    def forward(self, x_input: Tensor) -> Tensor:
        if not self.fast or x_input.dim() != 4:
            return super().forward(x_input)
        return analog_conv2d(self, x_input)


class FastAnalogLinear(AnalogLinear):
    """``AnalogLinear`` with the fast path's periphery (the same tile semantics as
    :class:`FastAnalogConv2d`, a linear layer being a 1x1 convolution of a 1x1 image): no
    ``.item()`` and no CPU tensor in its step, unlike aihwkit's forward."""

    fast: bool = True

    def forward(self, x_input: Tensor) -> Tensor:
        if not self.fast:
            return super().forward(x_input)
        return analog_linear(self, x_input)


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
    grid = list(_tile_grid(layer))
    if len(grid) > 1 and _groups_split_tiles(x) and _groupable(grid, k):
        return _layer_bias(layer, _grouped_rows(layer, x, grid, k))
    out: Optional[Tensor] = None
    for in_lo, in_hi, tiles in grid:
        c_lo, c_hi = in_lo // k, -(-in_hi // k)
        xs = x[:, c_lo:c_hi] if (c_lo, c_hi) != (0, x.shape[1]) else x
        # Where a tile boundary cuts through a channel's kernel window, the tile's
        # weights are padded with zeros for the part of the window it doesn't hold.
        pad = (in_lo - c_lo * k, c_hi * k - in_hi)
        parts = [_tile_conv(tile, layer, xs, pad, c_hi - c_lo) for tile, _, _ in tiles]
        row = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = row if out is None else out + row
    return _layer_bias(layer, out)


def _groups_split_tiles(x: Tensor) -> bool:
    """Whether a layer split into rows of tiles runs its rows as one grouped convolution: where
    launches count (CUDA, a compiled network); on the CPU's eager path one convolution per row is
    as fast and needs no copies of the rows' outputs."""
    return x.device.type != "cpu" or torch.compiler.is_compiling()


def _groupable(grid: list, k: int) -> bool:
    """Rows of tiles that a grouped convolution can run: each row one tile (the layer's outputs fit
    one tile), the same number of whole channels in every row (no boundary inside a kernel window)."""
    sizes = {hi - lo for lo, hi, _ in grid}
    return (all(len(tiles) == 1 for _, _, tiles in grid) and len(sizes) == 1
            and all(lo % k == 0 and hi % k == 0 for lo, hi, _ in grid))


def _grouped_rows(layer: AnalogConv2d, x: Tensor, grid: list, k: int) -> Tensor:
    """The rows of tiles as one convolution with ``groups = rows``: each row's DAC (its own input
    range) on its channels, its weights (noise, gradient scaling) as one group of the kernel, then
    each row's ADC and scales on its group of outputs, the partial sums added digitally, as one
    convolution per row computes them."""
    channels = (grid[0][1] - grid[0][0]) // k
    inputs, kernels = [], []
    for in_lo, in_hi, ((tile, _, _),) in grid:
        xs = x[:, in_lo // k:in_hi // k]
        inputs.append(_tile_input(tile, xs, _conv_statistics(layer, channels, (0, 0))))
        weight = _tile_weight(tile, x.shape[0])
        kernels.append(weight.reshape(weight.shape[0], channels, *layer.kernel_size))
    y = F.conv2d(torch.cat(inputs, dim=1), torch.cat(kernels, dim=0), None, layer.stride, layer.padding,
                 layer.dilation, groups=len(grid))
    parts = y.chunk(len(grid), dim=1)
    out = _tile_output(grid[0][2][0][0], parts[0])
    for (_, _, ((tile, _, _),)), part in zip(grid[1:], parts[1:]):
        out = out + _tile_output(tile, part)
    return out


def _conv_statistics(layer: AnalogConv2d, channels: int, pad: tuple[int, int]) -> Any:
    """``statistics(xs)`` of a tile of ``layer`` holding ``channels`` input channels less ``pad``
    elements of their kernel windows: the unfolded input's counts per pixel (:func:`_unfold_counts`)
    and its number of elements."""
    def statistics(xs: Tensor) -> tuple[Tensor, int]:
        h, w = xs.shape[-2:]
        out_hw = _out_hw(layer, h, w)
        counts = _unfold_counts(layer, channels, pad, h, w, out_hw, xs.device)
        kh, kw = layer.kernel_size
        return counts, xs.shape[0] * out_hw[0] * out_hw[1] * (channels * kh * kw - pad[0] - pad[1])

    return statistics


def analog_linear(layer: AnalogLinear, x: Tensor) -> Tensor:
    """The linear layer as 1x1 images (``(N, features, 1, 1)``): every tile boundary falls on a
    channel border and the unfolded input is the input itself."""
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1], 1, 1)
    out: Optional[Tensor] = None
    for in_lo, in_hi, tiles in _tile_grid(layer):
        xs = x[:, in_lo:in_hi] if (in_lo, in_hi) != (0, x.shape[1]) else x
        parts = [_tile_forward(tile, xs, _linear_statistics, _linear_mvm) for tile, _, _ in tiles]
        row = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = row if out is None else out + row
    return _layer_bias(layer, out).reshape(*lead, -1)


def _layer_bias(layer: Any, out: Tensor) -> Tensor:
    module = layer.analog_module
    bias = module.bias if isinstance(module, TileModuleArray) else None
    return out + periphery.per_channel(bias, out) if bias is not None else out


def _linear_statistics(xs: Tensor) -> tuple[Tensor, int]:
    return _ones_counts(xs.shape[1], xs.device), xs.numel()


def _linear_mvm(xq: Tensor, weight: Tensor) -> Tensor:
    return F.linear(xq.flatten(1), weight).view(xq.shape[0], weight.shape[0], 1, 1)


def _ones_counts(features: int, device: torch.device) -> Tensor:
    key = ("linear", features, device)
    if key not in _MAPS:
        _MAPS[key] = torch.ones(features, 1, dtype=torch.float64, device=device)
    return _MAPS[key]


def _conv(layer: AnalogConv2d, x: Tensor, kernel: Tensor) -> Tensor:
    return F.conv2d(x, kernel, None, layer.stride, layer.padding, layer.dilation)


def _covered(size: int, k: int, stride: int, pad: int, dil: int, out: int) -> list[list[int]]:
    """For each kernel offset, which input positions (0/1) some output position reads."""
    rows = []
    for i in range(k):
        hit = [0] * size
        for o in range(out):
            p = o * stride + i * dil - pad
            if 0 <= p < size:
                hit[p] = 1
        rows.append(hit)
    return rows


_MAPS: dict = {}


def _unfold_counts(layer: AnalogConv2d, channels: int, pad: tuple[int, int], h: int, w: int,
                   out_hw: tuple[int, int], device: torch.device) -> Tensor:
    """``(channels, h*w)``: how often each input pixel of each channel appears among the
    unfolded elements this tile holds (the padding zeros are not pixels)."""
    key = (layer.kernel_size, layer.stride, layer.padding, layer.dilation, channels, pad, h, w, out_hw, device)
    if key not in _MAPS:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
        rows = torch.tensor(_covered(h, kh, sh, ph, dh, out_hw[0]), dtype=torch.float64)
        cols = torch.tensor(_covered(w, kw, sw, pw, dw, out_hw[1]), dtype=torch.float64)
        cover = (rows[:, None, :, None] * cols[None, :, None, :]).reshape(kh * kw, h * w)
        mask = torch.ones(channels * kh * kw, dtype=torch.float64)
        mask[: pad[0]] = 0
        if pad[1]:
            mask[-pad[1]:] = 0
        _MAPS[key] = (mask.view(channels, kh * kw) @ cover).to(device)
    return _MAPS[key]


@torch.no_grad()
def _update_input_range_from_data(tile: Any, xs: Tensor, counts: Tensor, n: int) -> None:
    """aihwkit's ``apply_input_range(update_from_data=True)`` with the std of the unfolded input
    (padding zeros included: they count as elements but add nothing to the sums). The caller
    checks that the tile is still initialising (``_initialising``)."""
    params = tile.rpu_config.pre_post.input_range
    idx = tile.input_range_update_idx
    s1, s2 = periphery.weighted_moments(xs, counts)
    std = ((s2 - s1 * s1 / n) / max(n - 1, 1)).clamp_min(0).sqrt().to(xs.dtype)
    if std > 0.0:
        tile.input_range.data = (tile.input_range.data * idx + params.init_std_alpha * std) / (idx + 1)
        tile.input_range_update_idx.data += 1
    tile.input_range.data = tile.input_range.data.abs()


# Tile -> version of its input-range counter when the counter was seen to be past the
# initialisation window (kept here, not patched onto aihwkit's objects).
_RANGE_INITIALISED: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


def _initialising(tile: Any, init_from_data: int) -> bool:
    """Whether the tile still initialises its input range from data. Reading the counter costs
    a device sync, so "done" is remembered until the counter is overwritten (a checkpoint load).
    A compiled model is only compiled once every tile is done (:func:`ranges_initialised`)."""
    if torch.compiler.is_compiling():
        return False
    idx = tile.input_range_update_idx
    if _RANGE_INITIALISED.get(tile) == idx._version:
        return False
    if int(idx) >= init_from_data:
        _RANGE_INITIALISED[tile] = idx._version
        return False
    return True


def ranges_initialised(net: torch.nn.Module) -> bool:
    """Whether every fast tile of ``net`` is past its input-range initialisation from data (one
    device sync per tile until it is; none after)."""
    for layer in net.modules():
        if isinstance(layer, (FastAnalogConv2d, FastAnalogLinear)):
            for tile in layer.analog_tiles():
                if tile.input_range is not None and _initialising(tile, tile.rpu_config.pre_post.input_range.init_from_data):
                    return False
    return True


def mark_ranges_initialised(net: torch.nn.Module) -> None:
    """Count every tile's input range of ``net`` as initialised from data, as after its first
    ``init_from_data`` training batches (benchmarks of the steady state)."""
    for layer in net.modules():
        for tile in (layer.analog_tiles() if isinstance(layer, AnalogLayerBase) else ()):
            if getattr(tile, "input_range", None) is not None:
                tile.input_range_update_idx.data.fill_(tile.rpu_config.pre_post.input_range.init_from_data)


# aihwkit's TorchInferenceTile registers a hook on its weights (set_scales) dividing their gradient by
# the mapping scales squared; the fast path does the same in the graph (_ScaleWeightGrad) instead.
_GRAD_SCALED = "_lightning_nas_scales_weight_grad"


def _scales_weight_grad(tile: Any) -> bool:
    """Whether the tile's weight gradient is divided by its mapping scales squared, after removing
    aihwkit's hook for it (which it registers again whenever its scales are set)."""
    handle = getattr(tile, "_backward_hook_handle", None)
    if handle is not None:
        handle.remove()
        tile._backward_hook_handle = None
        setattr(tile, _GRAD_SCALED, True)
    return getattr(tile, _GRAD_SCALED, False) and tile.get_mapping_scales() is not None


def take_over_weight_hooks(net: torch.nn.Module) -> None:
    """:func:`_scales_weight_grad` for every fast tile of ``net``, outside a compiled graph (a
    compiled step's guards then see no hook to remove)."""
    for layer in net.modules():
        if isinstance(layer, (FastAnalogConv2d, FastAnalogLinear)):
            for tile in layer.analog_tiles():
                _scales_weight_grad(tile)


def _out_hw(layer: AnalogConv2d, h: int, w: int) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def _tile_conv(tile: Any, layer: AnalogConv2d, xs: Tensor, pad: tuple[int, int], channels: int) -> Tensor:
    def mvm(xq: Tensor, weight: Tensor) -> Tensor:
        kernel = F.pad(weight, pad) if pad != (0, 0) else weight
        return _conv(layer, xq, kernel.reshape(weight.shape[0], channels, *layer.kernel_size))

    return _tile_forward(tile, xs, _conv_statistics(layer, channels, pad), mvm)


def _tile_forward(tile: Any, xs: Tensor, statistics: Any, mvm: Any) -> Tensor:
    """One tile on its NCHW input ``xs``: ``statistics(xs)`` gives the unfolded input's counts and
    size (input-range initialisation and decay), ``mvm(xq, weight)`` the analog product."""
    return _tile_output(tile, mvm(_tile_input(tile, xs, statistics), _tile_weight(tile, xs.shape[0])))


def _steps(io: Any) -> tuple[float, float]:
    """The DAC's and the ADC's quantisation steps (0: not quantised)."""
    step_in = (1 / io.inp_res if io.inp_res > 1.0 else io.inp_res) * 2 * io.inp_bound if io.inp_res > 0 else 0.0
    step_out = (1 / io.out_res if io.out_res > 1.0 else io.out_res) * 2 * io.out_bound if io.out_res > 0 else 0.0
    return step_in, step_out


def _ideal(io: Any) -> bool:
    return io.is_perfect or io.mv_type == AnalogMVType.IDEAL


def _tile_input(tile: Any, xs: Tensor, statistics: Any) -> Tensor:
    """The tile's input path: the learned input range (aihwkit's ``pre_forward``) and the DAC."""
    rpu = tile.rpu_config
    io = rpu.forward
    r = tile.input_range
    if r is None:  # ideal periphery (check_supported rules out the other cases)
        return xs
    is_test = not tile.training
    grad = torch.is_grad_enabled()
    ir = rpu.pre_post.input_range
    training = not is_test and grad
    initialising = not is_test and _initialising(tile, ir.init_from_data)
    if initialising or (training and ir.decay > 0):
        counts, n = statistics(xs)
        if initialising:
            _update_input_range_from_data(tile, xs, counts, n)
    step, bound = (0.0, float("inf")) if _ideal(io) else (_steps(io)[0], io.inp_bound)
    if grad:
        decay = training and ir.decay > 0
        return _DAC.apply(xs, r, step, bound, ir, counts if decay else None, n if decay else 1)
    return periphery.dac(xs, r, step, bound)[0]


def _tile_weight(tile: Any, batch: int) -> Tensor:
    """The tile's weights as the product sees them: its own (their gradient divided by the mapping
    scales squared, as aihwkit's hook does), plus the training weight noise (aihwkit's ``modify_weight``)."""
    weight = tile.tile.weight
    if torch.is_grad_enabled() and weight.requires_grad and _scales_weight_grad(tile):
        weight = _ScaleWeightGrad.apply(weight, tile.get_mapping_scales())
    if tile.training:
        weight = TorchSimulatorTile.modify_weight(weight, tile.rpu_config.modifier, batch)
    return weight


def _tile_output(tile: Any, y: Tensor) -> Tensor:
    """The tile's output path: output noise, ADC, clipping; then its scales and digital bias."""
    rpu = tile.rpu_config
    io = rpu.forward
    is_test = not tile.training
    r = tile.input_range
    scale = tile.out_scaling_alpha.view(-1) if tile.out_scaling_alpha is not None else None
    for extra in (r, tile.get_mapping_scales(), io.out_scale if io.out_scale != 1.0 else None,
                  tile.alpha if is_test and rpu.drift_compensation is not None else None):
        if extra is not None:
            scale = extra if scale is None else scale * extra
    if not torch.is_tensor(scale) and scale is not None:
        scale = periphery.scalar_like(float(scale), y)
    if not _ideal(io):
        if tile.tile.out_noise_values is not None:
            raise UserError("the fast analog path does not support per-column output noise "
                            "(out_noise_values); set analog.implementation: aihwkit")
        out_bound = io.out_bound if io.out_bound > 0 else float("inf")
        step_out = _steps(io)[1]
        if torch.is_grad_enabled():
            y = _ADC.apply(y, scale, io.out_noise, step_out, out_bound)
        else:
            y = periphery.adc(y, io.out_noise, step_out, out_bound, need_mask=False, scale=scale, inplace=True)[0]
        scale = None  # applied by the ADC pass
    if scale is not None:
        y = y * periphery.per_channel(scale, y)
    if tile.digital_bias and tile.bias is not None:
        y = y + periphery.per_channel(tile.bias, y)
    return y
