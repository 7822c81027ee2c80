"""Fuzzed bad input through the Python API: every case is a valid result or one UserError."""

import math
import random

import pytest

from lightning_nas.errors import UserError
from lightning_nas.space import Architecture, load_architecture, n_params, sample

VALUES = [None, True, False, 0, -1, 1, 2, 3, 16, 16.0, 3.0, 2.5, 1e30, float("nan"), float("inf"), -0.0,
          "16", "A", "B", "", "x" * 500, [], [1], {}, {"a": 1}, (1, 2), b"A", 10**30, 2**63, -(2**70)]
KEYS = ["out_channel0", "kernel0", "M", "stages", "R", "B", "convblock", "widenfact", "skip",
        1, 2.5, None, True, (1, 2), "", "extra", "Out_channel0"]


def mutate(rng: random.Random, node):
    """One random edit somewhere in a nested architecture mapping."""
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        child = node[key]
        if isinstance(child, (dict, list)) and rng.random() < 0.6:
            node = dict(node)
            node[key] = mutate(rng, child)
            return node
    if isinstance(node, list) and node and rng.random() < 0.7:
        node = list(node)
        i = rng.randrange(len(node))
        node[i] = mutate(rng, node[i])
        return node
    if isinstance(node, dict):
        node = dict(node)
        action = rng.randrange(3)
        if action == 0 and node:
            del node[rng.choice(list(node))]
        elif action == 1:
            node[rng.choice(KEYS)] = rng.choice(VALUES)
        else:
            node[rng.choice(list(node) or KEYS)] = rng.choice(VALUES)
        return node
    if isinstance(node, list):
        return rng.choice([node * rng.randint(2, 4), [], node + [rng.choice(VALUES)], rng.choice(VALUES)])
    return rng.choice(VALUES)


def fuzzed(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    bases = [a.to_dict() for a in sample(20, seed=seed)]
    cases = []
    for _ in range(n):
        case = rng.choice(bases)
        for _ in range(rng.randint(1, 4)):
            case = mutate(rng, case)
        cases.append(case)
    return cases


def test_2500_fuzzed_architectures_give_an_architecture_or_one_user_error():
    raw, valid = [], 0
    for case in fuzzed(2500):
        try:
            arch = load_architecture(case)
        except UserError as err:
            assert "\n" not in str(err) and len(str(err)) < 400
            continue
        except Exception as err:  # noqa: BLE001 - what the test is looking for
            raw.append((case, repr(err)))
            continue
        valid += 1
        # A valid architecture is exact: integer counts, a stable id, an integer parameter count.
        assert all(type(v) is int for v in (arch.out_channel0, arch.kernel0, arch.M))
        assert all(type(s.R) is int and type(s.B) is int and type(s.widenfact) is float for s in arch.stages)
        assert Architecture.from_dict(arch.to_dict()) == arch and load_architecture(arch.to_dict()).id == arch.id
        params = n_params(arch, (3, 32, 32), 10)
        assert type(params) is int and params > 0
    assert raw == [], raw[:5]
    assert 100 < valid < 2400  # the fuzzer makes both kinds


@pytest.mark.parametrize("bad, field", [
    ({"out_channel0": 16.0, "stages": [{}]}, "out_channel0"),
    ({"kernel0": 3.0, "stages": [{}]}, "kernel0"),
    ({"kernel0": True, "stages": [{}]}, "kernel0"),
    ({"M": 1.0, "stages": [{}]}, "'M'"),
    ({"M": True, "stages": [{}]}, "'M'"),
    ({"stages": [{"R": 2.0}]}, "stages[1].R"),
    ({"stages": [{"skip": 1}]}, "stages[1].skip"),
    ({"stages": [{"convblock": ["A"]}]}, "stages[1].convblock"),
    ({"stages": [{"widenfact": True}]}, "stages[1].widenfact"),
    ({"stages": [{"widenfact": math.nan}]}, "stages[1].widenfact"),
    ({1: 2, "x": 3, "stages": [{}]}, "unknown architecture field"),
    ({"stages": [{1: 2, "y": 3}]}, "unknown field"),
    ({"stages": [{}] * 10**6}, "number of stages"),
])
def test_strict_types_and_unknown_keys_are_named(bad, field):
    with pytest.raises(UserError) as err:
        Architecture.from_dict(bad)
    assert field in str(err.value)


def test_whole_numbers_as_widen_factor_are_the_same_architecture():
    assert Architecture.from_dict({"stages": [{"widenfact": 2}]}) == Architecture.from_dict({"stages": [{"widenfact": 2.0}]})


@pytest.mark.parametrize("content, message", [
    (b"a: [1\n", r"not valid YAML \(line 2"),
    (b"a: 1\n---\nb: 2\n", "another document"),
    (b"!!python/object:os.system x\n", "not valid YAML"),
    (b"\xff\xfe\x00a\x00", "not UTF-8"),
    ("stages: [{R: 2}]\n".encode("utf-16"), "not UTF-8"),
    (b"", "must be a mapping"),
    (b"- 1\n- 2\n", "must be a mapping"),
])
def test_bad_architecture_files_are_one_user_error(tmp_path, content, message):
    path = tmp_path / "arch.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_architecture(str(path))


def test_unreadable_architecture_paths_are_one_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_architecture(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="can't be read"):
        load_architecture(str(tmp_path / ("x" * 5000 + ".yaml")))
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(UserError, match="can't be read"):
        load_architecture(str(tmp_path / "dir.yaml"))


def test_a_huge_architecture_is_refused_before_allocation():
    from lightning_nas.module import AnalogNASModule
    from lightning_nas.space import MAX_BUILD_PARAMS

    huge = {"out_channel0": 64, "kernel0": 7, "stages": [{"R": 16, "B": 4, "widenfact": 4.0}] * 5}
    params = n_params(Architecture.from_dict(huge), (3, 32, 32), 10)
    assert params > MAX_BUILD_PARAMS
    with pytest.raises(UserError, match=f"{params:,} parameters"):
        AnalogNASModule(huge, input_shape=(3, 32, 32))


def test_a_sample_of_fuzzed_architectures_through_the_cli_is_one_error_line(run_cli, tmp_path):
    import yaml

    from conftest import ROOT

    bad = []
    for case in fuzzed(400, seed=3):
        try:
            load_architecture(case)
        except UserError:
            bad.append(case)
    for case in bad[:4]:
        proc = run_cli("fit", "--config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--model.init_args.architecture",
                       yaml.safe_dump(case, default_flow_style=True).strip(), "--trainer.enable_progress_bar", "false")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert lines[-1].startswith("error: ") and not any(line.startswith("error") for line in lines[:-1])


OPTION_VALUES = ["0", "-1", "1", "abc", "[1, 0, 8]", "[]", "null", "1e9", "2.5", "true", "{a: 1}", "[1, 8, 8]"]
SEARCH_OPTIONS = ["--top_k", "--input_shape", "--num_classes", "--search.population", "--search.iterations",
                  "--search.survivors", "--search.max_params", "--search.max_avm", "--search.seed",
                  "--search.strategy", "--search.fitness", "--search.objectives", "--search.constraints", "--search.std_floor",
                  "--search.strategy.init_args.window", "--predictor.init_args.avm_per_stage", "--search.max_evaluations",
                  "--search.chip", "--search.time_limit_s", "--bogus"]


def test_fuzzed_search_options_give_a_result_or_one_user_error(tmp_path):
    from lightning_nas.commands import search

    rng = random.Random(0)
    raw = []
    for i in range(40):
        args = ["--predictor", '{"class_path": "stub_predictor.TargetPredictor"}', "--task", "digits", "--out_dir", str(tmp_path / str(i)),
                "--search.population", "8", "--search.iterations", "2", "--search.survivors", "4"]
        for _ in range(rng.randint(1, 3)):
            args += [rng.choice(SEARCH_OPTIONS), rng.choice(OPTION_VALUES)]
        try:
            search.main(args)  # noqa
        except UserError:
            pass
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            raw.append((args, repr(exc)))
    assert raw == []
