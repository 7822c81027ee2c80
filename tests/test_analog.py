import pytest
import torch
from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.nn import AnalogConv2d, AnalogLinear
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import WeightClipType, WeightModifierType
from torch import nn

from lightning_nas.analog import PRESETS, AnalogConfig
from lightning_nas.conversion import convert
from lightning_nas.errors import UserError
from lightning_nas.module import AnalogNASModule
from lightning_nas.network import build_network
from lightning_nas.space import PRESETS as ARCHS, Architecture, Stage


def test_default_preset_builds_the_documented_rpu_config():
    rpu = AnalogConfig().to_rpu_config()
    assert type(rpu) is TorchInferenceRPUConfig
    assert rpu.modifier.type == WeightModifierType.ADD_NORMAL and rpu.modifier.std_dev == 0.08
    assert rpu.clip.type == WeightClipType.FIXED_VALUE and rpu.clip.fixed_value == 1.0
    assert rpu.forward.inp_res == pytest.approx(1 / 254) and rpu.forward.out_res == pytest.approx(1 / 254)
    assert rpu.forward.out_noise == 0.04
    assert rpu.mapping.max_input_size == 512 and rpu.mapping.max_output_size == 512
    assert isinstance(rpu.noise_model, PCMLikeNoiseModel) and rpu.noise_model.g_converter.g_max == 25.0
    assert isinstance(rpu.drift_compensation, GlobalDriftCompensation)
    assert rpu.pre_post.input_range.enable
    assert rpu.forward.noise_management.name == "NONE" and rpu.forward.bound_management.name == "NONE"
    assert rpu.mapping.weight_scaling_omega == 1.0 and rpu.mapping.learn_out_scaling


def test_absmax_preset_keeps_aihwkit_default_periphery_management():
    rpu = AnalogConfig(preset="pcm_hwa_absmax").to_rpu_config()
    assert not rpu.pre_post.input_range.enable and not rpu.mapping.learn_out_scaling
    assert rpu.forward.noise_management.name == "ABS_MAX" and rpu.forward.bound_management.name == "ITERATIVE"


def test_overrides_and_dotted_rpu_overrides():
    cfg = AnalogConfig(weight_noise_std=0.0, inp_bits=6, tile_size=256, rpu_overrides={
        "forward.out_bound": 10.0, "forward.noise_management": "none"})
    rpu = cfg.to_rpu_config()
    assert rpu.modifier.type == WeightModifierType.NONE
    assert rpu.forward.inp_res == pytest.approx(1 / 62) and rpu.mapping.max_input_size == 256
    assert rpu.forward.out_bound == 10.0 and rpu.forward.noise_management.name == "NONE"
    assert cfg.resolved().out_bits == PRESETS["pcm_hwa"].out_bits  # untouched fields come from the preset


@pytest.mark.parametrize("cfg,msg", [
    (AnalogConfig(preset="nope"), "unknown analog preset 'nope'"),
    (AnalogConfig(inp_bits=1), "analog.inp_bits must be 0"),
    (AnalogConfig(weight_noise_std=-1.0), "analog.weight_noise_std must be >= 0"),
    (AnalogConfig(rpu_overrides={"forward.nope": 1}), "has no field 'nope'"),
    (AnalogConfig(rpu_overrides={"forward.noise_management": "bogus"}), "allowed: "),
])
def test_bad_analog_settings_are_user_errors(cfg, msg):
    with pytest.raises(UserError, match=msg):
        cfg.to_rpu_config()


def test_module_layers_really_are_aihwkit_analog_layers():
    module = AnalogNASModule("resnet20", input_shape=(1, 8, 8), num_classes=10)
    convs = [m for m in module.net.modules() if isinstance(m, AnalogConv2d)]
    linears = [m for m in module.net.modules() if isinstance(m, AnalogLinear)]
    assert len(convs) == 19 + 2 and len(linears) == 1  # 19 convs, 2 projections, 1 classifier
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in module.net.modules())
    tile = next(module.net.analog_tiles())
    assert type(tile).__name__ == "TorchInferenceTile"
    assert tile.rpu_config.modifier.std_dev == 0.08


def test_large_layers_are_split_into_tiles_of_at_most_tile_size():
    arch = Architecture(64, 3, (Stage(1, 1, "A", 1.0),))  # 3x3x64 = 576 inputs > 512
    net = convert(build_network(arch, (3, 8, 8), 10), AnalogConfig())
    conv = net.stages[0][0].branches[0][0][0]
    tiles = list(conv.analog_tiles())
    assert len(tiles) == 2
    assert max(t.tile.get_weights().shape[1] for t in tiles) <= 512


def _outputs_twice(cfg: AnalogConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = convert(build_network(Architecture(8, 3, (Stage(2), Stage(1, widenfact=2.0))), (1, 8, 8), 10), cfg)
    net.train(train)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():  # the torch tile redraws the training weight noise at every forward
        return net(x), net(x)


def test_training_weight_noise_is_really_injected():
    # No output noise and no quantisation (which would amplify rounding differences).
    noisy = AnalogConfig(out_noise=0.0, inp_bits=0, out_bits=0)
    clean = AnalogConfig(out_noise=0.0, inp_bits=0, out_bits=0, weight_noise_std=0.0)
    a, b = _outputs_twice(noisy, train=True)
    assert not torch.allclose(a, b)
    a, b = _outputs_twice(clean, train=True)
    assert torch.allclose(a, b)
    a, b = _outputs_twice(noisy, train=False)  # no weight noise at evaluation
    assert torch.allclose(a, b)


def test_analog_sgd_clips_weights_after_update():
    net = convert(build_network(ARCHS["resnet20"], (1, 8, 8), 10), AnalogConfig(clip_value=0.05))
    opt = AnalogSGD(net.parameters(), lr=10.0)
    loss = net(torch.randn(16, 1, 8, 8)).pow(2).sum()
    loss.backward()
    opt.step()
    w_max = max(t.tile.get_weights().abs().max().item() for t in net.analog_tiles())
    assert w_max <= 0.05 + 1e-6
