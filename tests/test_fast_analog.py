"""The fast analog convolution against aihwkit's torch tile on the same weights and inputs."""

import copy
import sys

import pytest
import torch
from aihwkit.nn import AnalogConv2d, AnalogLinear
from torch import nn

from lightning_nas.analog import AnalogConfig
from lightning_nas.conversion import convert
from lightning_nas.errors import UserError
from lightning_nas.compilation import compile_network
from lightning_nas.fast_analog import FastAnalogConv2d, FastAnalogLinear
from lightning_nas.module import AnalogNASModule

from clamp_rules import RULES, emulated_torch, pinned_reference, torch_rule

# Every test here runs on the CPU and, where one is visible, on CUDA (both paths on the device):
# the `gpu` marker parametrizes `device` (conftest.py) and `_on_device` points DEVICE and X at it.
pytestmark = pytest.mark.gpu
DEVICE = torch.device("cpu")


def pair(conv: nn.Module, input_range: float = 2.5, **overrides):
    """(reference, fast) analog layers (of a Conv2d or a Linear) holding the same weights and input ranges."""
    torch.manual_seed(0)
    ref = convert(nn.Sequential(copy.deepcopy(conv)), AnalogConfig(implementation="aihwkit", **overrides))[0]
    fast = convert(nn.Sequential(copy.deepcopy(conv)), AnalogConfig(implementation="fast", **overrides))[0]
    expected = (AnalogConv2d, FastAnalogConv2d) if isinstance(conv, nn.Conv2d) else (AnalogLinear, FastAnalogLinear)
    assert (type(ref), type(fast)) == expected
    fast.load_state_dict(ref.state_dict())
    ref, fast = ref.to(DEVICE), fast.to(DEVICE)
    for layer in (ref, fast):
        for tile in layer.analog_tiles():
            if tile.input_range is not None:
                tile.input_range.data.fill_(input_range)
                tile.input_range_update_idx.data.fill_(10**6)  # no more init-from-data updates
    return ref, fast


def conv(cin=16, cout=24, k=3, stride=1, padding=1, seed=0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)


def run(layer, x, seed=5, train=False, layer_of=None):
    (layer_of or layer).train(train)
    torch.manual_seed(seed)
    return layer(x)


def mismatch(a, b, tol=1e-5) -> float:
    return ((a - b).abs() > tol).float().mean().item()


X_CPU = torch.randn(8, 16, 10, 10, generator=torch.Generator().manual_seed(1))
X = X_CPU


@pytest.fixture(autouse=True)
def _on_device(device, monkeypatch):
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "DEVICE", device)
    monkeypatch.setattr(module, "X", X_CPU.to(device))


def test_ideal_forward_equals_digital():
    digital = conv()
    ref, fast = pair(digital, preset="ideal_periphery")
    expected = digital.to(DEVICE)(X)
    assert torch.allclose(run(fast, X), expected, atol=1e-5)
    assert torch.allclose(run(ref, X), expected, atol=1e-5)


@pytest.mark.parametrize("tile_size", [0, 72, 100])  # one tile; split on channel borders; split inside a window
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_quantised_forward_matches_reference(tile_size, bits, stride, grad):
    """Training forward with gradients, and eval forward without them (every validation, test and
    drift measurement; a fast path skipping the DAC or ADC there fails the ``no_grad`` cases)."""
    c = conv(stride=stride)
    ref, fast = pair(c, tile_size=tile_size, inp_bits=bits, out_bits=bits, out_noise=0.0)
    assert len(list(fast.analog_tiles())) == {0: 1, 72: 2, 100: 2}[tile_size]
    with torch.set_grad_enabled(grad):
        a, b = run(ref, X), run(fast, X)
    assert a.shape == b.shape and a.requires_grad == b.requires_grad == grad
    # Identical up to float summation order, which can flip an ADC rounding now and then.
    assert mismatch(a, b) < 0.01


def test_input_quantisation_step():
    eye = nn.Conv2d(4, 4, 1, bias=False)
    eye.weight.data = torch.eye(4).view(4, 4, 1, 1)
    _, fast = pair(eye, input_range=1.0, inp_bits=4, out_bits=0, out_noise=0.0)
    x = (torch.rand(2, 4, 5, 5) * 2 - 1).to(DEVICE)
    y = run(fast, x)
    levels = y * (2 ** 4 - 2) / 2  # 14 steps over [-1, 1]
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert (y - x).abs().max() <= 1 / 14 + 1e-6  # rounding error at most half a step (step = 2/14)


def test_output_quantisation_step_of_a_single_tile():
    ref, fast = pair(conv(), out_bits=4, inp_bits=0, out_noise=0.0)
    tile = next(fast.analog_tiles())
    y = run(fast, X)
    scales = tile.out_scaling_alpha * tile.get_mapping_scales()  # learned and mapping scales per column
    y_tile = y / (tile.input_range * scales.view(1, -1, 1, 1))
    step = 2 * tile.rpu_config.forward.out_bound / (2 ** 4 - 2)
    assert torch.allclose(y_tile / step, (y_tile / step).round(), atol=1e-3)


def test_each_input_tile_is_quantised_separately():
    one_tile, _ = pair(conv(), tile_size=0, out_bits=4, out_noise=0.0)
    _, split = pair(conv(), tile_size=72, out_bits=4, out_noise=0.0)
    a, b = run(one_tile, X), run(split, X)
    # Two partial sums each rounded on a 4-bit ADC differ from one rounded full sum.
    assert mismatch(a, b, tol=1e-3) > 0.05


def residual_std(layer, clean, x, n=20, train=False):
    res = torch.stack([run(layer, x, seed=s, train=train) - clean for s in range(n)])
    return res.mean().item(), res.std().item()


def test_output_noise_magnitude_matches_reference():
    ref, fast = pair(conv(), out_noise=0.1, inp_bits=0, out_bits=0)
    ref0, _ = pair(conv(), out_noise=0.0, inp_bits=0, out_bits=0)
    clean = run(ref0, X).detach()
    with torch.no_grad():
        m_ref, s_ref = residual_std(ref, clean, X)
        m_fast, s_fast = residual_std(fast, clean, X)
    assert s_ref > 0.01
    assert abs(s_fast / s_ref - 1) < 0.05
    assert abs(m_fast) < 0.05 * s_fast and abs(m_ref) < 0.05 * s_ref


def test_weight_noise_matches_reference():
    ref, fast = pair(conv(), weight_noise_std=0.1, out_noise=0.0, inp_bits=0, out_bits=0)
    ref0, _ = pair(conv(), weight_noise_std=0.0, out_noise=0.0, inp_bits=0, out_bits=0)
    with torch.no_grad():
        clean = run(ref0, X, train=True)
        # Same seed: the tiles draw the same weight noise in the same order.
        assert torch.allclose(run(ref, X, train=True), run(fast, X, train=True), atol=1e-5)
        _, s_ref = residual_std(ref, clean, X, train=True)
        _, s_fast = residual_std(fast, clean, X, train=True)
        _, s_eval = residual_std(fast, run(ref0, X), X, train=False)
    assert s_ref > 0.01 and abs(s_fast / s_ref - 1) < 0.05
    assert s_eval < 1e-6  # no weight noise at evaluation


def grads(layer, x, g, seed=5, layer_of=None):
    """Input, weight, input-range and output-scale gradients of ``(layer(x) * g).sum()`` (of every tile:
    concatenated); ``layer_of``: the layer whose parameters ``layer`` (a compiled network) runs."""
    params = layer_of or layer
    params.train()
    params.zero_grad(set_to_none=True)  # a second call measures afresh, not on top of the first
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    (layer(x) * g).sum().backward()
    tiles = list(params.analog_tiles())
    return (x.grad, *(torch.cat([getattr_path(t, name).grad.reshape(-1) for t in tiles])
                      for name in ("tile.weight", "input_range", "out_scaling_alpha")))


def getattr_path(obj, path):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("periphery", ["auto", "eager"])  # native on the CPU (compile on CUDA); eager
@pytest.mark.parametrize("scale", [0.5, 4.0])  # no input clipping / many inputs clipped
def test_gradients_match_reference(scale, periphery, monkeypatch):
    monkeypatch.setenv("LIGHTNING_NAS_PERIPHERY", periphery)
    ref, fast = pair(conv(), weight_noise_std=0.0, out_noise=0.0)
    x = X * scale
    g = torch.randn(8, 24, 10, 10, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    with pinned_reference():  # the reference under the fast path's boundary rule, whatever torch is installed
        gr = grads(ref, x, g)
    assert differing(gr, grads(fast, x, g)) == []


GRADIENTS = ("input", "weight", "input range", "output scales")


def differing(reference, fast) -> list[str]:
    """The gradients (of :data:`GRADIENTS`) that differ: all four are checked before a test fails."""
    return [name for name, a, b in zip(GRADIENTS, reference, fast)
            if not torch.allclose(a, b, rtol=1e-3, atol=1e-4)]


@pytest.mark.parametrize("periphery", ["auto", "eager"])
@pytest.mark.parametrize("rule", RULES)
def test_gradients_on_the_bounds_follow_the_pinned_rule_on_either_torch(rule, periphery, monkeypatch):
    """Inputs exactly on the DAC bound (the input range) and outputs exactly on the ADC bound: the
    fast path passes gradients strictly inside the bounds only; aihwkit's reference does whatever
    the installed torch's clamp does there (``rule``, emulated). Pinned to the fast path's rule, the
    reference matches it in all four gradients on either torch; unpinned on a torch that lets the
    bound through, it does not (so these inputs do sit on the bounds)."""
    monkeypatch.setenv("LIGHTNING_NAS_PERIPHERY", periphery)
    ref, fast = pair(conv(), weight_noise_std=0.0, out_noise=0.0)
    x = (X * 4).clone()
    x[:, :, ::3, ::2] = 2.5 * torch.sign(x[:, :, ::3, ::2])  # exactly on the input range (2.5)
    g = torch.randn(8, 24, 10, 10, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    with emulated_torch(rule):
        with pinned_reference():
            pinned = grads(ref, x, g)
        as_torch_does = grads(ref, x, g)
    fast_grads = grads(fast, x, g)
    assert differing(pinned, fast_grads) == []
    if rule == "inclusive":
        assert {"input", "weight"} <= set(differing(as_torch_does, fast_grads))
    else:
        assert differing(as_torch_does, fast_grads) == []
    assert torch_rule() in RULES  # the probe reads the installed torch's rule (documented in clamp_rules)


LINEAR_X_CPU = torch.randn(8, 40, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("tile_size", [0, 16])  # one tile; 3 x 2 tiles (partial sums of 3 rows)
@pytest.mark.parametrize("periphery", ["auto", "eager"])
def test_linear_layer_matches_reference(tile_size, periphery, monkeypatch):
    """The classifier: ``FastAnalogLinear`` against aihwkit's ``AnalogLinear`` on the same weights:
    the quantised forward (training and evaluation) and all four gradients, one tile or split."""
    monkeypatch.setenv("LIGHTNING_NAS_PERIPHERY", periphery)
    torch.manual_seed(0)
    ref, fast = pair(nn.Linear(40, 24), tile_size=tile_size, weight_noise_std=0.0, out_noise=0.0)
    assert len(list(fast.analog_tiles())) == {0: 1, 16: 6}[tile_size]
    x = LINEAR_X_CPU.to(DEVICE) * 3
    for train in (True, False):
        assert mismatch(run(ref, x, train=train), run(fast, x, train=train)) < 0.01
    g = torch.randn(8, 24, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    with pinned_reference():
        expected = grads(ref, x, g)
    assert differing(expected, grads(fast, x, g)) == []
    y3 = run(fast, x.view(2, 4, 40))  # leading dimensions are kept, as nn.Linear keeps them
    assert y3.shape == (2, 4, 24) and torch.allclose(y3.view(8, 24), run(fast, x), atol=1e-5)


@pytest.mark.parametrize("tile_size", [0, 72])  # one tile; two rows of tiles (one grouped convolution)
def test_compiled_layer_matches_reference(tile_size):
    """The fast layer compiled whole (``fullgraph=True``: DAC, weight-gradient scaling, ADC and scales
    in one graph, Inductor's kernels) against aihwkit's reference: forward and all four gradients."""
    ref, fast = pair(conv(), tile_size=tile_size, weight_noise_std=0.0, out_noise=0.0)
    compiled = compile_network(fast)
    x = X * 4  # many inputs clipped at the input range
    g = torch.randn(8, 24, 10, 10, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    with pinned_reference():
        expected = grads(ref, x, g)
    assert differing(expected, grads(compiled, x, g, layer_of=fast)) == []
    assert compiled.compiled is not None and compiled._ready  # it ran compiled, not eagerly
    for train in (True, False):
        assert mismatch(run(ref, x, train=train), run(compiled, x, train=train, layer_of=fast)) < 0.01


@pytest.mark.parametrize("grouped", [False, True])
def test_split_layer_as_one_grouped_convolution_matches_reference(grouped, monkeypatch):
    """A layer split into two rows of tiles on channel borders runs as one grouped convolution where
    launches count (CUDA, compiled), as one convolution per row on the CPU: the same forward and all
    four gradients as aihwkit's reference either way."""
    import torch.nn.functional as F

    from lightning_nas import fast_analog

    monkeypatch.setattr(fast_analog, "_groups_split_tiles", lambda x: grouped)
    ref, fast = pair(conv(), tile_size=72, weight_noise_std=0.0, out_noise=0.0)  # 2 rows of 8 channels
    calls = []
    conv2d = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(k.get("groups", a[6] if len(a) > 6 else 1))
                        or conv2d(*a, **k))
    x = X * 4
    g = torch.randn(8, 24, 10, 10, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    with pinned_reference():
        expected = grads(ref, x, g)
    calls.clear()
    assert differing(expected, grads(fast, x, g)) == []
    assert calls == ([2] if grouped else [1, 1])
    for train in (True, False):
        assert mismatch(run(ref, x, train=train), run(fast, x, train=train)) < 0.01


@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_input_range_decay_term_matches_reference(scale):
    """With a zero output gradient the input range's gradient is the decay term alone: ``decay * r``
    while at least ``input_min_percentage`` of the unfolded inputs lie inside the range (x 0.5),
    0 when many are clipped (x 4)."""
    ref, fast = pair(conv(), weight_noise_std=0.0, out_noise=0.0)
    g = torch.zeros(8, 24, 10, 10, device=DEVICE)
    r_ref, r_fast = grads(ref, X * scale, g)[2], grads(fast, X * scale, g)[2]
    ir = next(fast.analog_tiles()).rpu_config.pre_post.input_range
    assert torch.allclose(r_fast, r_ref, rtol=1e-6, atol=1e-9)
    assert r_fast.item() == pytest.approx(ir.decay * 2.5 if scale < 1 else 0.0)


def test_input_range_stays_once_initialised():
    """After ``init_from_data`` batches (the counter exactly there) training forwards leave the range
    and the counter alone, also on later forwards (the fast path remembers the state)."""
    ref, fast = pair(conv(), out_noise=0.0)
    for layer in (ref, fast):
        tile = next(layer.analog_tiles())
        tile.input_range_update_idx.data.fill_(tile.rpu_config.pre_post.input_range.init_from_data)
        for seed in range(3):
            run(layer, X * (seed + 2), train=True)
        assert tile.input_range.item() == 2.5
        assert tile.input_range_update_idx.item() == tile.rpu_config.pre_post.input_range.init_from_data


def test_input_range_initialised_from_unfolded_statistics():
    ref, fast = pair(conv(), out_noise=0.0)
    for layer in (ref, fast):
        for tile in layer.analog_tiles():
            tile.input_range_update_idx.data.fill_(0)
    for seed in range(3):
        run(ref, X * (seed + 1), train=True)
        run(fast, X * (seed + 1), train=True)
    r_ref = next(ref.analog_tiles()).input_range.item()
    r_fast = next(fast.analog_tiles()).input_range.item()
    assert r_ref == pytest.approx(r_fast, rel=1e-5)
    assert next(fast.analog_tiles()).input_range_update_idx.item() == 3
    assert next(fast.analog_tiles()).input_range.dtype == torch.float32


@pytest.mark.parametrize("shape,kernel", [((2, 1, 1, 1), 1), ((1, 1, 3, 3), 3)])  # 2 and 9 unfolded elements
def test_input_range_initialisation_with_few_elements_and_a_constant_batch(shape, kernel):
    """The std is the unbiased one over the unfolded elements (n - 1 matters for few of them), and a
    batch of zeros (std 0) leaves the range and the update counter alone, as in aihwkit."""
    digital = nn.Conv2d(1, 2, kernel, bias=False)
    ref, fast = pair(digital, out_noise=0.0)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    for layer in (ref, fast):
        for tile in layer.analog_tiles():
            tile.input_range_update_idx.data.fill_(0)
        run(layer, torch.zeros_like(x), train=True)
    tiles = [next(layer.analog_tiles()) for layer in (ref, fast)]
    assert [t.input_range_update_idx.item() for t in tiles] == [0, 0]
    assert [t.input_range.item() for t in tiles] == [2.5, 2.5]
    for layer in (ref, fast):
        run(layer, x, train=True)
    assert tiles[1].input_range_update_idx.item() == tiles[0].input_range_update_idx.item() == 1
    assert tiles[1].input_range.item() == pytest.approx(tiles[0].input_range.item(), rel=1e-5)
    with torch.no_grad():  # two output channels, each with its own scale
        assert torch.allclose(run(fast, x), run(ref, x), atol=1e-6)


def test_input_ranges_of_split_strided_non_square_layers_initialise_as_in_aihwkit():
    """Every tile's range from data where the unfolded multiplicities are uneven: a tile boundary
    inside a channel's kernel window (tile_size 100 of 144 inputs), stride 2 on a 10x7 image, and
    a second geometry in the same process (the multiplicities are cached per geometry)."""
    for layer_args, tile_size in (((16, 24, 3, 2, 1), 100), ((16, 8, 2, 1, 0), 40)):
        cin, cout, k, stride, padding = layer_args
        ref, fast = pair(nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False), out_noise=0.0,
                         tile_size=tile_size)
        for layer in (ref, fast):
            for tile in layer.analog_tiles():
                tile.input_range_update_idx.data.fill_(0)
            for seed in range(2):
                run(layer, X[..., :7] * (seed + 1), train=True)
        r_ref = [t.input_range.item() for t in ref.analog_tiles()]
        r_fast = [t.input_range.item() for t in fast.analog_tiles()]
        assert len(r_fast) > 1 and r_fast == pytest.approx(r_ref, rel=1e-5)


def test_unsupported_periphery_is_an_error_not_a_fallback():
    with pytest.raises(UserError, match="noise_management=ABS_MAX"):
        convert(nn.Sequential(conv()), AnalogConfig(implementation="fast", input_range=False))
    with pytest.raises(UserError, match="out_noise_std"):
        convert(nn.Sequential(conv()), AnalogConfig(rpu_overrides={"forward.out_noise_std": 0.5}))
    net = convert(nn.Sequential(conv()), AnalogConfig(preset="pcm_hwa_absmax"))  # its default is aihwkit
    assert type(net[0]) is AnalogConv2d
    from aihwkit.simulator.configs import QuantizedTorchInferenceRPUConfig

    from lightning_nas.fast_analog import unsupported_reason

    assert unsupported_reason(QuantizedTorchInferenceRPUConfig()) == \
        "quantized periphery (QuantizedTorchInferenceRPUConfig)"
    assert unsupported_reason(AnalogConfig().to_rpu_config()) is None


def test_default_module_uses_fast_path_and_reference_stays_selectable():
    """The default module runs the fast path, ``implementation: aihwkit`` the reference; a checkpoint
    of one loads into the other, and programming and drift work unchanged: the two networks,
    programmed with the same seed and drifted to one day, compute the same outputs."""
    fast = AnalogNASModule("resnet20", input_shape=(1, 8, 8))
    ref = AnalogNASModule("resnet20", analog=AnalogConfig(implementation="aihwkit"), input_shape=(1, 8, 8))
    assert fast.analog_config.implementation == "fast"  # the default
    assert any(isinstance(m, FastAnalogConv2d) for m in fast.net.modules())
    assert not any(isinstance(m, FastAnalogConv2d) for m in ref.net.modules())
    # Same state-dict layout: a checkpoint of one loads into the other.
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    outputs = []
    for module in (fast, ref):
        net = module.net.to(DEVICE).eval()
        for tile in net.analog_tiles():
            tile.rpu_config.forward.out_noise = 0.0  # the fast path's noise is its own random stream
        with torch.no_grad():
            torch.manual_seed(0)
            net.program_analog_weights()
            torch.manual_seed(1)
            net.drift_analog_weights(86400.0)
            outputs.append(net(x))
        assert all(tile.programmed_weights is not None for tile in net.analog_tiles())
    assert mismatch(*outputs) < 0.05  # 21 layers: an ADC rounding flip now and then propagates
    assert torch.equal(outputs[0].argmax(1), outputs[1].argmax(1))


def test_periphery_without_learned_input_range_is_rejected():
    # aihwkit's torch tile passes no input gradient at all in this configuration.
    overrides = {"forward.noise_management": "none", "forward.bound_management": "none"}
    with pytest.raises(UserError, match="without learned input ranges"):
        convert(nn.Sequential(conv()), AnalogConfig(input_range=False, rpu_overrides=overrides))


def test_double_backward_is_refused_not_wrong():
    _, fast = pair(conv(), weight_noise_std=0.0)
    fast.train()
    x = X.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(fast(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()


def test_in_place_op_on_the_output_is_a_loud_error_with_the_native_periphery():
    from lightning_nas import periphery

    if DEVICE.type != "cpu" or periphery.choose(X) != "native":
        pytest.skip("only the native CPU periphery writes its output in place")
    ref, fast = pair(conv(), weight_noise_std=0.0)
    for layer in (ref, fast):
        layer.train()
    torch.relu_(ref(X)).sum().backward()  # aihwkit: fine
    with pytest.raises(RuntimeError, match="inplace operation"):
        torch.relu_(fast(X)).sum().backward()
    fast(X).relu().sum().backward()  # out of place: fine


def test_bad_periphery_backend_fails_when_the_model_is_built(monkeypatch):
    monkeypatch.setenv("LIGHTNING_NAS_PERIPHERY", "bogus")
    with pytest.raises(UserError, match="LIGHTNING_NAS_PERIPHERY='bogus'.*auto, eager, native, compile"):
        convert(nn.Sequential(conv()), AnalogConfig())
