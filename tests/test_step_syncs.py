"""Host syncs in the fast path's steady-state training step and evaluation (issue 30, item 1).

A GPU step that reads a value on the host (``.item()``, ``if tensor``) or copies a CPU tensor to the
device waits for the device and stalls the launch queue. Counted with ``benchmarks/op_count.py`` on
PyTorch's meta device, where a CPU tensor meeting the model's tensors is a copy between devices as it
would be on CUDA, and every host read of a value is seen (there are no values)."""

import sys

import pytest
import torch

from conftest import ROOT, load_file

op_count = load_file(ROOT / "benchmarks" / "op_count.py", "op_count")
META = torch.device("meta")


def resnet32():
    from lightning_nas.network import build_network
    from lightning_nas.space import load_architecture

    net = build_network(load_architecture("resnet32"), (3, 32, 32), 10)
    net.input_shape, net.num_classes = (3, 32, 32), 10
    return net


def test_steady_state_step_and_eval_of_resnet32_have_no_host_syncs():
    counts = op_count.count_mode("fast-eager", resnet32(), 8, META)  # the eager periphery: what CUDA runs
    assert counts["train"]["sync_ops"] == {} and counts["eval"]["sync_ops"] == {}
    digital = op_count.count_mode("digital", resnet32(), 8, META)
    assert counts["train"]["launches"] > digital["train"]["launches"] > 0  # the counter sees the step


def test_the_counter_sees_the_syncs_of_aihwkits_own_classifier(monkeypatch):
    """aihwkit's ``AnalogLinear`` forward reads its input range on the host (``.item()``): run as it, the
    same count is not 0, so the test above can fail."""
    from lightning_nas.fast_analog import FastAnalogLinear

    monkeypatch.setattr(FastAnalogLinear, "fast", False)
    counts = op_count.count_mode("fast-eager", resnet32(), 8, META)
    assert counts["train"]["sync_ops"].get("_local_scalar_dense", 0) >= 1
    assert counts["eval"]["sync_ops"].get("_local_scalar_dense", 0) >= 1


def test_the_counter_sees_a_cpu_tensor_meeting_the_device():
    x = torch.ones(4, device=META)
    with op_count.OpCounter() as counter:
        x * torch.ones(4).to(x.device)  # a CPU tensor with more than one element, copied to the device
        x * torch.tensor(2.0)  # a 0-d CPU scalar travels as a kernel argument: no copy
    assert counter.syncs == {"_to_copy (copy between devices)": 1}


def test_the_fast_path_takes_over_aihwkits_weight_gradient_hooks():
    """aihwkit registers a hook on every tile's weights that divides their gradient by the scales it
    was given, a CPU tensor after the model moves to a GPU (a host-to-device copy per tile in every
    backward). The fast path removes it and divides in its graph, by the tile's own buffer: the
    gradient is the reference's (tests/test_fast_analog.py), and no hook is left on any weight.
    (On the meta device the hooks do not survive the move, so this is checked on the CPU.)"""
    from lightning_nas.analog import AnalogConfig
    from lightning_nas.conversion import convert

    net = convert(resnet32(), AnalogConfig())
    tiles = [t for m in net.modules() if hasattr(m, "analog_tiles") for t in m.analog_tiles()]
    assert all(t._backward_hook_handle is not None for t in tiles)  # aihwkit's, after conversion
    net.train()
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(t._backward_hook_handle is None and not t.tile.weight._backward_hooks for t in tiles)
