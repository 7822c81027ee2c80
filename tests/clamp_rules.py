"""The gradient of a clamp at its bound, pinned (issue 30, item 4).

PyTorch changed what ``torch.clamp`` passes back for an input exactly on a scalar bound: 1 in older
releases (the bound counts as inside), 0 in the one pinned here (it counts as clipped). aihwkit's
reference clamps the ADC output (``analog_mvm.clamp``: levels exactly at ``out_bound``) and the DAC
input (``periphery.clamp``: inputs exactly at the input range) with it, so its gradients depend on the
installed torch. The fast path's rule is a decision, not torch's: **a gradient passes only strictly
inside the bounds** (``|level| < bound``; an output on the bound is saturated and clipped), in
``lightning_nas/periphery/eager.py`` and ``native/periphery.c``. The comparisons pin the
reference to the same rule with :func:`pinned_reference` whatever torch is installed, and
:func:`emulated_torch` reproduces either torch behaviour on any release.

aihwkit 1.2.0 (the release for Python 3.12) no longer clips the DAC input (``AnalogMVM._prepare_input``:
inputs clipped to the input range arrive there exactly on the bound) with ``clamp``'s gradient but with
its own ``where(|x| <= bound, x, clamp(x).detach())``: the bound counts as inside on any torch, so
that clipped inputs carry their input-range gradient. :func:`reference_rule` sets that clip's rule too
(:func:`_dac_rule`), so the pinned reference is the same on aihwkit 1.1.0 and 1.2.0, and
:func:`emulated_torch` is aihwkit 1.1.0's behaviour on a torch with the rule (on 1.2.0 it overrides
1.2.0's own, always inclusive, DAC rule).
"""

import contextlib

import torch

RULES = ("strict", "inclusive")
"""``strict``: the gradient passes where min < x < max (this project's rule, and torch 2.14's);
``inclusive``: also on the bounds (older torch releases)."""


def clamp_with(rule: str):
    """A ``torch.clamp`` with the same values whose gradient follows ``rule`` at the bounds."""
    assert rule in RULES

    def clamp(input, min=None, max=None, *, out=None):  # noqa: A002 - torch's signature
        assert out is None
        y = torch.clamp(input, min, max)
        if not input.requires_grad:
            return y
        inside = torch.ones_like(input, dtype=torch.bool)
        if min is not None:
            inside &= input > min if rule == "strict" else input >= min
        if max is not None:
            inside &= input < max if rule == "strict" else input <= max
        return y.detach() + (input - input.detach()) * inside

    return clamp


def torch_rule() -> str:
    """What the installed torch does at a scalar bound."""
    x = torch.tensor([1.0], requires_grad=True)
    torch.clamp(x, -1.0, 1.0).sum().backward()
    return "inclusive" if x.grad.item() == 1.0 else "strict"


AIHWKIT_CLAMPS = ("aihwkit.simulator.tiles.analog_mvm", "aihwkit.simulator.tiles.periphery")
"""The aihwkit modules whose ``clamp`` (imported from torch) sets the reference's boundary gradients."""


@contextlib.contextmanager
def _dac_rule(rule: str):
    """aihwkit >= 1.2's DAC clip (``where(|x| <= bound, ...)`` in ``AnalogMVM._prepare_input``) follows
    ``rule`` while the context is open; nothing to do on aihwkit 1.1, whose DAC clip is the ``clamp``
    that :func:`reference_rule` replaces."""
    import importlib

    mvm = importlib.import_module("aihwkit.simulator.tiles.analog_mvm")
    if not hasattr(mvm, "where"):  # aihwkit 1.1: clamp(scaled_input, -bound, bound)
        yield
        return
    saved, saved_where = mvm.AnalogMVM.__dict__["_prepare_input"], mvm.where
    original = getattr(saved.__func__, "unpinned", saved.__func__)

    def prepare_input(cls, *args, **kwargs):
        io_pars = kwargs["io_pars"] if "io_pars" in kwargs else args[4]
        bound = io_pars.inp_bound if io_pars.inp_bound > 0 else float("inf")
        clamp = clamp_with(rule)
        mvm.where = lambda condition, input, other: clamp(input, -bound, bound)  # noqa: A002
        try:
            return original(cls, *args, **kwargs)
        finally:
            mvm.where = saved_where

    prepare_input.unpinned = original
    try:
        mvm.AnalogMVM._prepare_input = classmethod(prepare_input)
        yield
    finally:
        mvm.AnalogMVM._prepare_input = saved


@contextlib.contextmanager
def reference_rule(rule: str):
    """aihwkit's forward clamps with ``rule`` at the bounds while the context is open."""
    import importlib

    modules = [importlib.import_module(m) for m in AIHWKIT_CLAMPS]
    saved = [m.clamp for m in modules]
    try:
        for m in modules:
            m.clamp = clamp_with(rule)
        with _dac_rule(rule):
            yield
    finally:
        for m, c in zip(modules, saved):
            m.clamp = c


def pinned_reference():
    """The reference under this project's rule (``strict``), whatever torch is installed."""
    return reference_rule("strict")


def emulated_torch(rule: str):
    """aihwkit (1.1.0; see the module docstring for 1.2.0) as it runs on a torch release with ``rule``
    (to test both on any torch)."""
    return reference_rule(rule)
