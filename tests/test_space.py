import hashlib
import json
import random
from dataclasses import fields

import numpy as np
import pytest
import torch
import yaml

from lightning_nas.blocks import network_layers
from lightning_nas.errors import ArchitectureError, UserError
from lightning_nas.hardware_cost import hardware_cost
from lightning_nas.network import build_network
from lightning_nas.search import mutations as mut
from lightning_nas.space import (
    DESCRIBE_ORDER, DIMS, GLOBAL_DIMS, MUTATION_GROUPS, PRESETS, SPACE, STAGE_DIMS, Architecture, Stage,
    feature_names, load_architecture, n_params, sample, space_size, stage_choices,
)

PUBLISHED = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name,published", PUBLISHED.items())
def test_cifar_resnet_presets_match_published_param_counts(name, published):
    arch = PRESETS[name]
    built = count(build_network(arch, (3, 32, 32), 10))
    assert abs(built - published) / published < 0.03
    assert n_params(arch, (3, 32, 32), 10) == built


def test_resnet_preset_structure():
    arch = PRESETS["resnet32"]
    assert (arch.out_channel0, arch.kernel0, arch.M) == (16, 3, 3)
    assert [s.R for s in arch.stages] == [5, 5, 5]
    assert [s.widenfact for s in arch.stages] == [1.0, 2.0, 2.0]
    assert all(s.B == 1 and s.convblock == "A" and s.skip for s in arch.stages)


def test_wide_resnet_and_resnext_are_reachable():
    wrn, rnx = PRESETS["wrn16_4"], PRESETS["resnext_b4"]
    assert n_params(wrn, (3, 32, 32), 10) > 2.5e6  # WRN-16-4 has ~2.75M
    assert all(s.B == 4 for s in rnx.stages)
    assert count(build_network(rnx, (3, 32, 32), 10)) == n_params(rnx, (3, 32, 32), 10)


@pytest.mark.parametrize("seed", range(12))
def test_n_params_matches_built_model_for_random_architectures(seed):
    arch = sample(1, seed=seed, max_params=400_000)[0]
    shape = random.Random(seed).choice([(1, 8, 8), (3, 32, 32), (1, 49, 10)])
    assert n_params(arch, shape, 7) == count(build_network(arch, shape, 7))


@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 10), ((3, 32, 32), 10), ((1, 49, 10), 12), ((3, 96, 96), 2)])
def test_builder_on_all_task_input_shapes(shape, classes):
    arch = Architecture(8, 5, (Stage(1, 2, "B", 1.5), Stage(1, 1, "A", 2.0, skip=False), Stage(1, 1, "A", 1.0),
                               Stage(1, 1, "A", 1.0), Stage(1, 1, "A", 1.0)))  # 5 stages: map shrinks to 1x1
    out = build_network(arch, shape, classes)(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


def test_round_trip_hash_and_id_are_stable():
    arch = PRESETS["resnext_b4"]
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert Architecture.from_json(arch.to_json()) == arch
    assert Architecture.from_dict(yaml.safe_load(arch.to_yaml())) == arch
    assert hash(Architecture.from_dict(arch.to_dict())) == hash(arch)
    assert arch.id == Architecture.from_dict(json.loads(arch.to_json())).id
    assert len(arch.id) == 12 and arch.id != PRESETS["resnet20"].id
    assert PRESETS["resnet20"].id == "2b8a7c5626de"  # stable across runs and versions of this space


@pytest.mark.parametrize("data,field", [
    ({"out_channel0": 10, "stages": [{}]}, "out_channel0"),
    ({"kernel0": 4, "stages": [{}]}, "kernel0"),
    ({"stages": []}, "M"),
    ({"stages": [{}] * 6}, "M"),
    ({"stages": [{"R": 0}]}, "stages[1].R"),
    ({"stages": [{}, {"R": 17}]}, "stages[2].R"),
    ({"stages": [{"B": 5}]}, "stages[1].B"),
    ({"stages": [{"convblock": "C"}]}, "stages[1].convblock"),
    ({"stages": [{"widenfact": 1.3}]}, "stages[1].widenfact"),
    ({"stages": [{"widenfact": 4.5}]}, "stages[1].widenfact"),
    ({"stages": [{"skip": "yes"}]}, "stages[1].skip"),
])
def test_validation_names_field_and_range(data, field):
    with pytest.raises(ArchitectureError, match=r"\'?" + field.replace("[", r"\[").replace("]", r"\]")):
        Architecture.from_dict(data)


def test_validation_errors_mention_allowed_values():
    with pytest.raises(ArchitectureError, match=r"allowed: 1.0..4.0 in steps of 0.5"):
        Architecture.from_dict({"stages": [{"widenfact": 1.3}]})


def test_fields_beyond_M_cannot_be_given():
    with pytest.raises(ArchitectureError, match="'M' is 1 but 2 stage"):
        Architecture.from_dict({"M": 1, "stages": [{}, {}]})
    with pytest.raises(ArchitectureError, match="unknown architecture field"):
        Architecture.from_dict({"R4": 3, "stages": [{}]})


def test_feature_vector_is_fixed_length_and_zero_padded():
    names = feature_names()
    one = Architecture(16, 3, (Stage(3, 2, "B", 1.5, False),)).feature_vector()
    five = PRESETS["resnet20"].feature_vector()
    assert len(one) == len(five) == len(names) == 28
    assert one[:8] == [16, 3, 1, 3, 2, 1, 1.5, 0]
    assert one[8:] == [0.0] * 20
    assert dict(zip(names, five))["widenfact3"] == 2.0


def test_space_size_is_exact():
    assert stage_choices() == 16 * 4 * 2 * 7 * 2
    assert space_size() == 7 * 3 * sum(1792 ** m for m in range(1, 6))


@pytest.mark.parametrize("method", ["uniform", "lhs"])
def test_sampling_is_seeded_distinct_and_respects_budget(method):
    a = sample(40, seed=3, method=method, max_params=200_000)
    b = sample(40, seed=3, method=method, max_params=200_000)
    c = sample(40, seed=4, method=method, max_params=200_000)
    assert a == b and a != c
    assert len({x.id for x in a}) == 40
    assert all(n_params(x, (3, 32, 32), 10) <= 200_000 for x in a)


def test_sampling_excludes_given_ids():
    first = sample(10, seed=0)
    more = sample(10, seed=0, exclude={x.id for x in first})
    assert not {x.id for x in first} & {x.id for x in more}


def test_lhs_covers_every_stratum_of_a_dimension():
    archs = sample(21, seed=1, method="lhs")  # 21 = 7 out_channel0 values x 3
    counts = {c: sum(a.out_channel0 == c for a in archs) for c in (8, 12, 16, 24, 32, 48, 64)}
    assert set(counts.values()) == {3}


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(UserError, match="raise max_params"):
        sample(5, seed=0, max_params=10, max_tries=5)


def test_load_architecture_accepts_preset_mapping_and_file(tmp_path):
    arch = PRESETS["resnet20"]
    (tmp_path / "a.yaml").write_text(arch.to_yaml())
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"architecture": arch.to_dict(), "score": 1.0}))
    assert load_architecture("resnet20") == arch
    assert load_architecture(arch.to_dict()) == arch
    assert load_architecture(str(tmp_path / "a.yaml")) == arch
    assert load_architecture(str(tmp_path / "w.yaml")) == arch
    with pytest.raises(UserError, match="does not exist"):
        load_architecture(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="unknown architecture 'resnet99'"):
        load_architecture("resnet99")


# -- the table of dimensions --------------------------------------------------------------
def test_the_records_and_the_table_agree():
    assert [f.name for f in fields(Stage)] == [d.name for d in STAGE_DIMS]
    assert [f.name for f in fields(Architecture)] == [d.name for d in GLOBAL_DIMS] + ["stages"]
    assert sorted(DESCRIBE_ORDER) == sorted(d.name for d in STAGE_DIMS)
    grouped = [name for names in MUTATION_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(DIMS)  # every field has exactly one mutation group
    assert Stage() == Stage(**{d.name: d.default for d in STAGE_DIMS})
    assert len(SPACE.genome) == len(feature_names()) == len(SPACE.feature_scale())


def test_genome_round_trip_features_and_define_by_run():
    for arch in sample(100, seed=8, method="uniform") + list(PRESETS.values()):
        indices = SPACE.encode(arch)
        assert sum(v is None for v in indices) == len(STAGE_DIMS) * (5 - arch.M)
        assert SPACE.decode([0 if v is None else v for v in indices]) == arch
        assert SPACE.features(arch) == arch.feature_vector()
        values = {g.key: g.dim.choices[v] for g, v in zip(SPACE.genome, indices) if v is not None}
        asked = []
        assert SPACE.build(lambda g: asked.append(g.key) or values[g.key]) == arch
        assert asked == list(values)  # only the fields of the stages it has, in genome order


def test_one_mutation_step_is_about_one_unit_of_scaled_distance():
    """The table's scales: every one-field mutation moves the scaled feature vector by 0.25 to 2."""
    scale = np.asarray(SPACE.feature_scale())
    rng = random.Random(4)
    for arch in sample(60, seed=6, method="uniform"):
        for name, mutation in mut.FIELD_MUTATIONS.items():
            child = mutation(arch, rng)
            step = np.abs(np.subtract(child.feature_vector(), arch.feature_vector()) / scale).sum()
            assert 0.25 <= step <= 2, (name, arch.describe(), child.describe())


def test_sampling_streams_are_unchanged():
    """The shipped campaign store is keyed by these ids: the space's refactorings must keep them."""
    ids = [a.id for a in sample(1000, seed=0, method="lhs", max_params=100_000, in_shape=(1, 8, 8), n_classes=10)]
    assert hashlib.sha1(",".join(ids).encode()).hexdigest() == "dd8c73da3eefc0328091eedb3fd770eb34c7f49e"
    assert [a.describe() for a in sample(2, seed=1, method="uniform")] == [
        "c8k7-5xA2w3s-2xB1w2.5s-1xB2w1.5s-15xA1w2.5s", "c24k5-4xA1w2n-14xB3w1.5s"]
    assert [a.id for a in sample(2, seed=1, method="stagewise", max_params=50_000, in_shape=(1, 8, 8))] == [
        "8264e7eecb9d", "c41cc7a21495"]


@pytest.mark.parametrize("make,field", [
    (lambda: Architecture(stages=5), "stages"),
    (lambda: Architecture(stages=None), "stages"),
    (lambda: Architecture(stages="AB"), "stages"),
    (lambda: Architecture(stages={"R": 1}), "stages"),
    (lambda: Architecture(stages=[1, 2]), "stages[1]"),
    (lambda: Architecture(stages=()), "M (number of stages)"),
    (lambda: Architecture(out_channel0="16"), "out_channel0"),
    (lambda: Architecture(kernel0=3.0), "kernel0"),
    (lambda: Architecture(out_channel0=True), "out_channel0"),
    (lambda: Stage(R="x"), "stages[0].R"),
    (lambda: Stage(B=[1]), "stages[0].B"),
    (lambda: Stage(convblock=None), "stages[0].convblock"),
    (lambda: Stage(widenfact="2"), "stages[0].widenfact"),
    (lambda: Stage(skip=1), "stages[0].skip"),
])
def test_direct_construction_with_wrong_types_is_one_architecture_error(make, field):
    with pytest.raises(ArchitectureError) as info:
        make()
    message = str(info.value)
    assert message.startswith(f"architecture field '{field}' is ") and "\n" not in message and "allowed: " in message


def test_direct_construction_and_loading_give_the_same_error():
    for bad in (5, "AB", None):
        with pytest.raises(ArchitectureError) as direct:
            Architecture(stages=bad)
        with pytest.raises(ArchitectureError) as loaded:
            Architecture.from_dict({"stages": bad})
        assert str(direct.value) == str(loaded.value)


# -- one description of the layers ----------------------------------------------------------
def test_network_params_and_cost_model_read_the_same_layers_for_200_architectures():
    """n_params, the built network's modules and the cost model's layers agree on 200 architectures."""
    shapes = [((1, 8, 8), 10), ((3, 32, 32), 10), ((1, 49, 10), 12), ((3, 16, 16), 2)]
    archs = sample(200, seed=12, method="stagewise", max_params=300_000, in_shape=(3, 16, 16))
    for k, arch in enumerate(archs):
        shape, classes = shapes[k % len(shapes)]
        net = build_network(arch, shape, classes)
        layers = network_layers(arch, shape, classes)
        weights = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert [(layer.rows, layer.cols) for layer in layers] == [
            (m.weight[0].numel(), m.weight.shape[0]) for m in weights], arch.describe()
        assert n_params(arch, shape, classes) == count(net) == sum(layer.params for layer in layers)
        assert len(hardware_cost(arch, shape, classes, 0).layers) == len(layers)
