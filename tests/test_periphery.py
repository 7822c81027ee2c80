"""The periphery backends (native C, torch.compile) against the eager reference, and the
statistics of the native kernel's Gaussian noise."""

import inspect
import math
import warnings

import pytest
import torch
from scipy import stats

from lightning_nas import periphery as P
from lightning_nas.periphery import native as N
from lightning_nas.errors import UserError

# The kernel is built by the session fixture `native_kernel` (conftest.py) when a test first
# needs it, not at collection; without a C compiler those tests skip with the reason.
needs_native = pytest.mark.usefixtures("native_kernel")

# (N, C, H, W): a 7x7 plane (odd sizes, bit masks not byte aligned per plane) and one tensor
# larger than a thread chunk (32768 elements), so several OpenMP chunks are used.
SHAPES = [(3, 5, 7, 7), (4, 16, 32, 32)]
STEP_IN, STEP_OUT = 2 / 254, 20 / 254


def data(shape, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
# inp_bound 0.85: bound / step in float32 lands one ulp above the top code unless the limit
# is computed exactly as the eager reference does (it was, once, in the C kernel).
@pytest.mark.parametrize("step,inp_bound", [(STEP_IN, 1.0), (0.0, 1.0), (STEP_IN, 0.5), (STEP_IN, 0.85)])
def test_native_dac_and_backward_equal_eager(shape, step, inp_bound):
    x, g, r = data(shape), data(shape, 1), torch.tensor([1.7])
    counts = torch.randint(0, 10, (shape[1], shape[2] * shape[3])).double()
    ref, ref_outside = P.dac(x, r, step, inp_bound, counts=counts, backend="eager")
    out, outside = P.dac(x, r, step, inp_bound, counts=counts, backend="native")
    assert torch.equal(out, ref)
    assert outside.item() == ref_outside.item() > 0  # exact: integer counts in float64
    ref_gx, ref_sum = P.dac_backward(g, x, r, step, inp_bound, backend="eager")
    gx, total = P.dac_backward(g.clone(), x, r, step, inp_bound, inplace=True, backend="native")
    assert torch.allclose(gx, ref_gx, rtol=1e-6, atol=1e-7)
    assert total.item() == pytest.approx(ref_sum.item(), rel=1e-4)
    assert (ref_gx == 0).float().mean() > 0.05  # the clip masked some gradients


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("step,bound", [(STEP_OUT, 3.0), (0.0, 3.0), (STEP_OUT, math.inf), (2 * 2.4 / 254, 2.4)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_native_adc_and_backward_equal_eager(shape, step, bound, per_channel):
    y, g = data(shape), data(shape, 1)
    scale = torch.rand(shape[1]) + 0.5 if per_channel else torch.tensor([0.7])
    ref, ref_mask, ref_q = P.adc(y, 0.0, step, bound, True, scale, keep_unscaled=True, backend="eager")
    out, packed, q = P.adc(y.clone(), 0.0, step, bound, True, scale, keep_unscaled=True, inplace=True,
                           backend="native")
    assert torch.equal(out, ref)
    assert torch.equal(N._unpack_bits(packed, y), ref_mask)
    assert q is None  # recovered from out in the backward
    ref_gy, ref_gs = P.adc_backward(g, ref_mask, scale, ref_q, None, backend="eager")
    gy, gs = P.adc_backward(g, packed, scale, q, out, backend="native")
    assert torch.equal(gy, ref_gy)
    assert gs.shape == scale.shape and torch.allclose(gs, ref_gs, rtol=1e-4, atol=1e-4)
    if bound < math.inf:
        assert 0.01 < (~ref_mask).float().mean() < 0.9  # some outputs clipped, most not


@needs_native
def test_native_adc_keeps_the_unscaled_output_when_a_scale_is_zero():
    y, g = data(SHAPES[0]), data(SHAPES[0], 1)
    scale = torch.rand(5) + 0.5
    scale[2] = 0.0
    _, mask, ref_q = P.adc(y, 0.0, STEP_OUT, 3.0, True, scale, keep_unscaled=True, backend="eager")
    out, packed, q = P.adc(y, 0.0, STEP_OUT, 3.0, True, scale, keep_unscaled=True, backend="native")
    assert torch.equal(q, ref_q)
    ref = P.adc_backward(g, mask, scale, ref_q, None, backend="eager")
    got = P.adc_backward(g, packed, scale, q, out, backend="native")
    assert torch.allclose(got[1], ref[1], rtol=1e-4, atol=1e-4) and got[1][2] != 0


def native_noise(n=2_000_000, seed=0, std=1.0):
    torch.manual_seed(seed)
    return P.adc(torch.zeros(1, 1, 1, n), std, 0.0, math.inf, False, backend="native")[0].flatten().double()


@needs_native
def test_native_noise_is_standard_gaussian():
    z = native_noise()
    assert abs(z.mean().item()) < 0.003 and abs(z.std().item() - 1) < 0.003
    assert stats.kstest(z[:200_000].numpy(), "norm").pvalue > 1e-3
    tail = (z.abs() > 3).double().mean().item()
    assert tail == pytest.approx(2 * stats.norm.sf(3), rel=0.1)
    assert abs(stats.kurtosis(z.numpy())) < 0.02  # Gaussian tails, not a sum of uniforms
    for lag in (1, 2, 1024):  # neighbours, Box-Muller pairs, block halves
        assert abs(torch.corrcoef(torch.stack([z[:-lag], z[lag:]]))[0, 1].item()) < 0.005


@needs_native
def test_native_noise_follows_torch_seed_and_not_thread_count():
    a, b = native_noise(100_000, seed=1), native_noise(100_000, seed=1)
    assert torch.equal(a, b)
    assert abs(torch.corrcoef(torch.stack([a, native_noise(100_000, seed=2)]))[0, 1]) < 0.02
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native_noise(100_000, seed=1)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, a)


@needs_native
def test_output_noise_std_matches_eager():
    y = torch.zeros(8, 4, 50, 50)
    torch.manual_seed(0)
    eager = P.adc(y, 0.04, STEP_OUT, 3.0, False, backend="eager")[0] - y
    native = P.adc(y, 0.04, STEP_OUT, 3.0, False, backend="native")[0] - y
    # Noise (std 0.04) below half an ADC step (0.039): most outputs round to 0 in both.
    assert native.std().item() == pytest.approx(eager.std().item(), rel=0.03)
    assert (native == 0).float().mean().item() == pytest.approx((eager == 0).float().mean().item(), abs=0.01)


def test_compiled_backend_equals_eager():
    x, r, g = data(SHAPES[0], scale=4.0), torch.tensor([1.7]), data(SHAPES[0], 1)
    scale = torch.rand(5) + 0.5
    for inp_bound in (1.0, 0.85):
        args = (x, r, STEP_IN, inp_bound)
        assert torch.equal(P.dac(*args, backend="compile")[0], P.dac(*args, backend="eager")[0])
        assert torch.equal(P.dac_mask(*args, backend="compile"), P.dac_mask(*args, backend="eager"))
        assert torch.equal(P.dac_backward(g, *args, backend="compile")[0], P.dac_backward(g, *args, backend="eager")[0])
    for step, bound in ((STEP_OUT, 3.0), (2 * 2.4 / 254, 2.4)):
        a = P.adc(x, 0.0, step, bound, True, scale, keep_unscaled=True, backend="compile")
        b = P.adc(x, 0.0, step, bound, True, scale, keep_unscaled=True, backend="eager")
        assert all(torch.equal(u, v) for u, v in zip(a, b))
        assert (~b[1]).any()  # some outputs clipped


@needs_native
def test_backend_setting_errors_and_fallbacks(monkeypatch):
    x = data(SHAPES[0])
    monkeypatch.setenv(P.ENV, "fastest")
    with pytest.raises(UserError, match="LIGHTNING_NAS_PERIPHERY='fastest'.*auto, eager, native, compile"):
        P.choose(x)
    monkeypatch.setenv(P.ENV, "native")
    with pytest.raises(UserError, match="float32"):
        P.choose(x.double())
    monkeypatch.setenv(P.ENV, "auto")
    assert P.choose(x) == "native"
    monkeypatch.setattr(P, "_warned", set())  # warned once per process: maybe already by an earlier test
    with pytest.warns(UserWarning, match="eager PyTorch backend.*float64"):
        assert P.choose(x.double()) == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.choose(x.double()) == "eager"  # once per reason
    for setting in ("eager", "native", "compile"):  # a setting that can run is what runs
        monkeypatch.setenv(P.ENV, setting)
        assert P.choose(x) == setting
    monkeypatch.setenv(P.ENV, "auto")
    with pytest.warns(UserWarning, match="eager PyTorch backend .device meta"):  # neither CPU nor CUDA
        assert P.choose(torch.empty(2, device="meta")) == "eager"


def test_missing_compiler_is_an_error_or_a_warned_fallback(monkeypatch, tmp_path):
    monkeypatch.setattr(N, "_lib", None)
    monkeypatch.setattr(N, "_lib_error", None)
    monkeypatch.setenv("LIGHTNING_NAS_CACHE", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(P, "_warned", set())
    x = data(SHAPES[0])
    monkeypatch.setenv(P.ENV, "native")
    with pytest.raises(UserError, match="C kernel could not be built"):
        P.choose(x)
    monkeypatch.setenv(P.ENV, "auto")
    with pytest.warns(UserWarning, match="could not be built"):
        assert P.choose(x) == "eager"


@needs_native
def test_native_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_NAS_CACHE", str(tmp_path))
    first = P.build_native()
    assert first.parent == tmp_path and first.suffix == ".so"
    mtime = first.stat().st_mtime_ns
    assert P.build_native() == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left


@needs_native
def test_empty_batch():
    y, scale = torch.zeros(0, 5, 3, 3), torch.rand(5)
    out, packed, q = P.adc(y, 0.04, STEP_OUT, 3.0, True, scale, keep_unscaled=True, backend="native")
    assert out.shape == y.shape and packed.numel() == 0
    grad_y, grad_scale = P.adc_backward(y, packed, scale, q, out, backend="native")
    assert grad_y.shape == y.shape and torch.equal(grad_scale, torch.zeros(5))
    assert P.dac(y, torch.tensor([1.0]), STEP_IN, 1.0, backend="native")[0].shape == y.shape


def test_compiled_backend_compiles_once_per_configuration_not_per_shape():
    """A training run's variety (layer shapes, batch sizes, channel slices, bounds, inputs that
    require grad, inference mode), more than dynamo's recompile limit: the eager results, no
    recompile-limit error, and each configuration compiled once (LIGHTNING_NAS_PERIPHERY=compile
    on CPU once stopped in the first epoch with "recompile limit exceeded")."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list
    from torch._dynamo.utils import counters

    from lightning_nas.periphery import compiled as C

    shapes = [(64, 1, 8, 8), (64, 16, 8, 8), (64, 32, 4, 4), (64, 64, 2, 2), (17, 16, 8, 8), (40, 32, 4, 4),
              (1, 16, 8, 8), (3, 5, 7, 7), (8, 64, 3, 5), (64, 8, 8, 8)]
    assert len(shapes) > torch._dynamo.config.recompile_limit

    def graphs_per_key():
        return {k: len(_debug_get_cache_entry_list(inspect.unwrap(f))) for k, f in C._compiled.items()}

    before, graphs = graphs_per_key(), counters["stats"]["unique_graphs"]
    for i, (n, c, h, w) in enumerate(shapes):
        base = data((n, 2 * c, h, w), seed=i, scale=3.0).requires_grad_()
        x, g = base[:, c:], data((n, c, h, w), seed=100 + i)  # a channel slice, as a split layer passes
        r = torch.tensor([1.5 + 0.1 * i], requires_grad=True)
        counts = torch.randint(0, 10, (c, h * w)).double()
        step, inp_bound, bound = STEP_IN * (1 + i % 3), 0.5 + 0.04 * i, 2.0 + 0.2 * i
        scale = torch.rand(c) + 0.5 if c > 1 else torch.tensor([0.7])
        for name, call in [
            ("dac", lambda b: P.dac(x, r, step, inp_bound, counts=counts, backend=b)),
            ("dac_backward", lambda b: P.dac_backward(g, x, r, step, inp_bound, backend=b)),
            ("adc", lambda b: P.adc(x, 0.0, step, bound, True, scale, keep_unscaled=True, backend=b)),
            ("adc_backward", lambda b: P.adc_backward(g, x.detach().abs() < bound, scale, x.detach(), None,
                                                      backend=b)),
        ]:
            got, ref = call("compile"), call("eager")
            for u, v in zip(got, ref):
                assert (u is None) == (v is None), name
                assert u is None or torch.allclose(u, v.detach(), rtol=1e-4, atol=1e-4), (name, (n, c, h, w))
                if u is not None and u.shape == x.shape:  # element-wise results exact, sums up to their order
                    assert torch.equal(u, v.detach()), (name, (n, c, h, w))
        with torch.inference_mode():  # validation: inference tensors, no counts
            xi = x.detach().clone()
            assert torch.equal(P.dac(xi, r, step, inp_bound, backend="compile")[0],
                               P.dac(xi, r, step, inp_bound, backend="eager")[0])
    # One compiled function per configuration (size-1 dimensions included), not per shape; each
    # compiles once, or twice where Inductor picks its reduction strategy by size (a CPU sum of
    # more than 4096 elements guards on that).
    after = graphs_per_key()
    assert 0 < len(set(after) - set(before)) <= 12, after.keys()
    sums = {k for k in after if k[0] in ("_dac_backward", "_adc_backward") or (k[0] == "_dac" and k[-1] is not None)}
    assert all(n == 1 for k, n in after.items() if k not in sums), after
    assert all(n <= 2 for n in after.values()), after
    assert counters["stats"]["unique_graphs"] - graphs == sum(after.values()) - sum(before.values())


# -- semantics of every operation, each backend the CPU runs against a direct computation --------

@pytest.fixture(params=["eager", "native"])
def backend(request):
    """Each backend the CPU runs (native: skipped without a C compiler)."""
    if request.param == "native":
        request.getfixturevalue("native_kernel")
    return request.param


@pytest.mark.parametrize("step,inp_bound", [(STEP_IN, 1.0), (0.0, 1.0), (STEP_IN, 0.5), (STEP_IN, 2.0)])
def test_dac_mask_is_where_the_backward_passes_gradients(backend, step, inp_bound):
    """``dac_mask`` (the fast path's backward with ``inp_bound > 1``) marks what ``torch.clamp`` passes:
    inputs strictly inside the range and DAC codes strictly inside the bound."""
    x, r = data(SHAPES[0]), torch.tensor([1.7])
    mask = P.dac_mask(x, r, step, inp_bound, backend=backend)
    y = torch.clamp(x, -1.7, 1.7) / 1.7
    code = torch.round(y / step) * step if step else y
    assert torch.equal(mask, code.abs() < inp_bound)
    assert torch.equal(P.dac_mask(x, r, step, inp_bound), mask)  # the backend auto picks: same
    if inp_bound <= 1.0:  # the backward's own mask
        g = torch.ones_like(x)
        grad_x, total = P.dac_backward(g, x, r, step, inp_bound, backend=backend)
        assert torch.equal(mask, grad_x != 0)
        assert torch.equal(g, torch.ones_like(x))  # not in place unless permitted
        assert total.dtype == x.dtype and total.item() == pytest.approx((x * mask).sum().item(), rel=1e-5)
        assert 0.05 < (~mask).float().mean() < 0.95
    else:  # the codes stay within +-1: only the input clip (checked by the fast path itself) masks
        assert mask.all()


def test_dac_quantises_clips_and_counts_the_inputs_outside_the_range(backend):
    x, r = data(SHAPES[0]), torch.tensor([1.7])
    counts = torch.randint(0, 10, (5, 49)).double()
    out, outside = P.dac(x, r, STEP_IN, 0.5, counts=counts, backend=backend)
    expected = torch.clamp(torch.round(torch.clamp(x, -1.7, 1.7) / 1.7 / STEP_IN) * STEP_IN, -0.5, 0.5)
    assert torch.allclose(out, expected, atol=1e-6)
    at_or_beyond = (x.abs() >= 1.7).double().sum(0).flatten(1)  # (C, H*W)
    assert outside.item() == (at_or_beyond * counts).sum().item() > 0


def test_weighted_moments_are_the_sums_over_the_unfolded_input(backend):
    x = data(SHAPES[0])
    counts = torch.randint(0, 5, (5, 49)).float()  # float32 counts: a backend converts them itself
    s1, s2 = P.weighted_moments(x, counts, backend=backend)
    weights = counts.view(1, 5, 7, 7).double()
    assert s1.dtype == s2.dtype == torch.float64
    assert s1.item() == pytest.approx((x.double() * weights).sum().item(), rel=1e-9)
    assert s2.item() == pytest.approx((x.double() ** 2 * weights).sum().item(), rel=1e-9)


@pytest.mark.gpu
def test_scalar_like_is_a_cached_zero_d_tensor(device):
    like = torch.zeros(2, dtype=torch.float64, device=device)
    s = P.scalar_like(0.25, like)
    assert s.dim() == 0 and s.item() == 0.25 and s.dtype == torch.float64 and s.device == like.device
    assert P.scalar_like(0.25, like) is s and P.scalar_like(0.5, like) is not s
    assert P.scalar_like(0.25, like.float()).dtype == torch.float32
    assert not s.is_inference()


def test_adc_backward_masks_the_gradient_and_gives_the_scale_its_gradient(backend):
    """Straight-through inside the bound (0 where the ADC clipped); with a scale, the input gradient is
    scaled and the scale's gradient is ``sum(g * unscaled output)``, the unscaled output either kept
    or recovered as ``out / scale``; without either, no scale gradient."""
    y, g = data(SHAPES[0]), data(SHAPES[0], 1)
    lim = P.clip_limit(3.0, STEP_OUT)
    passes = torch.round(y / STEP_OUT).abs() < lim
    q = torch.clamp(torch.round(y / STEP_OUT), -lim, lim) * STEP_OUT
    assert 0.01 < (~passes).float().mean() < 0.9
    _, passed, _ = P.adc(y.clone(), 0.0, STEP_OUT, 3.0, True, backend=backend)
    grad_y, grad_scale = P.adc_backward(g, passed, None, backend=backend)
    assert torch.equal(grad_y, torch.where(passes, g, 0.0)) and grad_scale is None
    scale = torch.rand(5, generator=torch.Generator().manual_seed(3)) + 0.5
    out, passed, unscaled = P.adc(y.clone(), 0.0, STEP_OUT, 3.0, True, scale, keep_unscaled=False, backend=backend)
    assert unscaled is None
    grad_y, grad_scale = P.adc_backward(g, passed, scale, None, out, backend=backend)
    assert torch.allclose(grad_y, torch.where(passes, g * scale.view(1, -1, 1, 1), 0.0), atol=1e-6)
    assert torch.allclose(grad_scale, (g * q).sum((0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert P.adc_backward(g, passed, scale, None, None, backend=backend)[1] is None
