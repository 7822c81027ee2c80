"""The analog hardware cost model against aihwkit's own mapping, and by hand for ResNet-20."""

import math

import pytest

from lightning_nas.analog import PRESETS, AnalogConfig
from lightning_nas.errors import UserError
from lightning_nas.hardware_cost import ChipConfig, chip_from, hardware_cost
from lightning_nas.space import Architecture, Stage, cifar_resnet, n_params, sample


def aihwkit_tiles(arch, in_shape, n_classes, preset):
    from lightning_nas.conversion import convert
    from lightning_nas.network import build_network

    net = convert(build_network(arch, in_shape, n_classes), AnalogConfig(preset=preset))
    return sum(1 for _ in net.analog_tiles())


# Wide layers split over tiles in rows and columns (1024 channels x 3 x 3 = 9,216 rows).
WIDE = Architecture(64, 3, (Stage(R=1, B=1, convblock="A", widenfact=4.0, skip=True),
                            Stage(R=1, B=2, convblock="B", widenfact=4.0, skip=True)))


@pytest.mark.slow
def test_tile_count_equals_aihwkit_for_50_random_architectures_and_every_preset():
    archs = sample(25, seed=3, method="uniform", max_params=2_000_000, in_shape=(3, 32, 32), n_classes=10)
    archs += sample(24, seed=4, method="uniform", max_params=100_000, in_shape=(1, 8, 8), n_classes=10)
    cases = [(a, (3, 32, 32), 10) for a in archs[:25]] + [(a, (1, 8, 8), 10) for a in archs[25:]]
    cases.append((WIDE, (3, 16, 16), 100))
    split = 0
    for arch, shape, classes in cases:
        for preset in PRESETS:
            tile = AnalogConfig(preset=preset).resolved().tile_size
            cost = hardware_cost(arch, shape, classes, tile)
            assert cost.tiles == aihwkit_tiles(arch, shape, classes, preset), (arch.describe(), preset)
            split += cost.tiles > len(cost.layers)
    assert split >= 5  # the comparison covered layers split over several tiles


def test_wide_layers_split_in_rows_and_columns_like_aihwkit():
    cost = hardware_cost(WIDE, (3, 16, 16), 100, 512)
    conv2 = next(layer for layer in cost.layers if layer.name == "stages.0.0.branches.0.conv2")
    assert (conv2.rows, conv2.cols) == (256 * 9, 256) and (conv2.row_splits, conv2.col_splits) == (5, 1)
    squeeze = next(layer for layer in cost.layers if layer.name == "stages.1.0.branches.1.squeeze")
    assert (squeeze.rows, squeeze.cols, squeeze.positions) == (256, 256, 16 * 16)  # before the stride
    expand = next(layer for layer in cost.layers if layer.name == "stages.1.0.branches.0.expand")
    assert (expand.rows, expand.cols, expand.col_splits, expand.positions) == (256, 1024, 2, 8 * 8)
    assert hardware_cost(WIDE, (3, 16, 16), 100, 0).tiles == len(cost.layers)  # unlimited tiles: one per layer


def test_resnet20_by_hand():
    """ResNet-20 on CIFAR-10 with 512 x 512 tiles, counted by hand.

    Stem 27x16 and stage 1's six 144x16 convs: 7 layers, 1 tile each, 32x32 = 1,024 positions.
    Stage 2 (16x16 = 256 positions): 144x32, five 288x32 and the 16x32 shortcut: 7 tiles.
    Stage 3 (8x8 = 64 positions): 288x64, the 32x64 shortcut (1 tile each) and five 576x64 convs
    (576 rows > 512: 2 tiles each). Classifier 64x10: 1 tile, 1 MVM.
    """
    cost = hardware_cost(cifar_resnet(20), (3, 32, 32), 10, 512, ChipConfig())
    assert len(cost.layers) == 22
    assert cost.tiles == 7 + 7 + 2 + 5 * 2 + 1 == 27
    mvms = 7 * 1024 + 7 * 256 + (2 + 5 * 2) * 64 + 1
    assert cost.mvms == mvms == 9729
    adc = 7 * 1024 * 16 + 7 * 256 * 32 + (2 * 64 + 5 * 2 * 64) * 64 + 10
    assert cost.adc_conversions == adc
    weights = 27 * 16 + 6 * 144 * 16 + 144 * 32 + 5 * 288 * 32 + 16 * 32 + 288 * 64 + 32 * 64 + 5 * 576 * 64 + 64 * 10
    bn_channels = 16 + 6 * 16 + 6 * 32 + 32 + 6 * 64 + 64
    assert weights == n_params(cifar_resnet(20), (3, 32, 32), 10) - 2 * bn_channels - 10  # no BN, no bias
    assert cost.utilisation == pytest.approx(weights / (27 * 512 * 512))
    positions = 7 * 1024 + 7 * 256 + 7 * 64 + 1
    assert cost.latency_us == pytest.approx(positions * 133.0 / 1000)
    assert cost.energy_uj == pytest.approx(mvms * 2 * 512 * 512 / 9.76 / 1e6)
    assert cost.fits_chip and not hardware_cost(cifar_resnet(20), (3, 32, 32), 10, 512, ChipConfig(n_tiles=26)).fits_chip


def test_chip_constants_scale_latency_and_energy_and_a_chip_tile_size_overrides_the_preset():
    arch = cifar_resnet(20)
    base = hardware_cost(arch, (3, 32, 32), 10, 512)
    slow = hardware_cost(arch, (3, 32, 32), 10, 512, ChipConfig(mvm_latency_ns=266.0, energy_per_op_pj=0.2))
    assert slow.latency_us == pytest.approx(2 * base.latency_us)
    assert slow.energy_uj == pytest.approx(base.energy_uj * 0.2 * 9.76)
    small = hardware_cost(arch, (3, 32, 32), 10, 512, ChipConfig(tile_size=256))
    # 256 x 256 tiles: 288 rows take 2 tiles, 576 rows 3 (stem and stage 1: 7, stage 2: 1 + 5 * 2 + 1,
    # stage 3: 2 + 5 * 3 + 1, classifier 1)
    assert small.tiles == 7 + 12 + 18 + 1
    assert small.tiles == sum(math.ceil(layer.rows / 256) for layer in small.layers)


@pytest.mark.parametrize("value, message", [
    ({"n_tiles": 0}, "chip.n_tiles must be an integer >= 1"),
    ({"mvm_latency_ns": -1}, "chip.mvm_latency_ns must be a number > 0"),
    ({"energy_per_op_pj": "a"}, "chip.energy_per_op_pj must be a number > 0"),
    ({"tile_size": -3}, "chip.tile_size must be an integer >= 0"),
    ({"tiles": 3}, "unknown chip field(s) tiles"),
    ([1, 2], "chip must be a mapping"),
])
def test_bad_chip_configs_are_one_clear_error(value, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chip_from(value)
