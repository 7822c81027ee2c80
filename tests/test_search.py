import csv
import random
from dataclasses import asdict

import pytest
import yaml

from lightning_nas.commands import retrain, search as search_cmd
from lightning_nas.errors import UserError
from lightning_nas.search import mutations as mut
from lightning_nas.search.evolution import SearchConfig, evolve, pareto_front, random_search
from lightning_nas.space import Architecture, load_architecture, n_params, sample
from stub_predictor import TargetPredictor

SHAPE, CLASSES = (1, 8, 8), 10
ARCHS = sample(60, seed=5, method="uniform")


def diff(a: Architecture, b: Architecture) -> set[str]:
    """Names of the fields that differ, e.g. {'kernel0'} or {'stages[2].R'}."""
    out = {f for f in ("out_channel0", "kernel0") if getattr(a, f) != getattr(b, f)}
    if a.M != b.M:
        out.add("M")
    for i, (s, t) in enumerate(zip(a.stages, b.stages)):
        out |= {f"stages[{i}].{f}" for f in asdict(s) if getattr(s, f) != getattr(t, f)}
    return out


@pytest.mark.parametrize("fn,field", [
    (mut.change_depth, "R"), (mut.change_convblock, "convblock"), (mut.change_branches, "B"),
    (mut.change_widenfact, "widenfact"), (mut.toggle_skip, "skip")])
def test_stage_mutations_change_one_field_of_one_stage(fn, field):
    rng = random.Random(0)
    for arch in ARCHS:
        child = fn(arch, rng)
        changed = diff(arch, child)
        assert len(changed) == 1 and changed.pop().endswith(f".{field}"), (arch.describe(), child.describe())
        if field in ("R", "B"):
            i = next(k for k, (s, t) in enumerate(zip(arch.stages, child.stages)) if s != t)
            assert abs(getattr(arch.stages[i], field) - getattr(child.stages[i], field)) == 1
        if field == "widenfact":
            i = next(k for k, (s, t) in enumerate(zip(arch.stages, child.stages)) if s != t)
            assert abs(arch.stages[i].widenfact - child.stages[i].widenfact) == 0.5


@pytest.mark.parametrize("fn,field", [(mut.change_out_channel0, "out_channel0"), (mut.change_kernel0, "kernel0")])
def test_global_mutations_change_only_their_field(fn, field):
    rng = random.Random(1)
    for arch in ARCHS:
        assert diff(arch, fn(arch, rng)) == {field}


def test_add_and_remove_stage():
    rng = random.Random(2)
    for arch in ARCHS:
        grown, shrunk = mut.add_stage(arch, rng), mut.remove_stage(arch, rng)
        if arch.M == 5:
            assert grown is None
        else:
            assert grown.M == arch.M + 1 and grown.stages[:-1] == arch.stages and grown.stages[-1].R == 1
        if arch.M == 1:
            assert shrunk is None
        else:
            assert shrunk.stages == arch.stages[:-1] and shrunk.kernel0 == arch.kernel0


def test_mutate_always_returns_a_valid_different_architecture():
    rng = random.Random(3)
    for arch in ARCHS:
        child = mut.mutate(arch, rng, {"width": 0.8, "depth": 0.8, "other": 0.6})
        assert child != arch and Architecture.from_dict(child.to_dict()) == child


def config(**kw):
    base = dict(population=40, iterations=30, survivors=30, max_params=300_000, seed=0)
    return SearchConfig(**{**base, **kw})


def test_constraints_hold_for_every_reported_architecture():
    cfg = config(max_params=60_000, max_avm=3.5)  # AVM = number of stages: at most 3 allowed
    result = evolve(TargetPredictor(), cfg, SHAPE, CLASSES)
    feasible = result.feasible()
    assert feasible
    for ind in feasible:
        assert ind.n_params < 60_000 and n_params(ind.arch, SHAPE, CLASSES) == ind.n_params
        assert ind.pred["avm"] < 3.5 and ind.arch.M <= 3
    assert all(i.n_params < 60_000 for i in result.history)  # over-size children are never evaluated


def test_one_batched_predict_per_generation_and_no_duplicates():
    predictor = TargetPredictor()
    result = evolve(predictor, config(), SHAPE, CLASSES)
    ids = [i.arch.id for i in result.history]
    assert len(ids) == len(set(ids)) == result.evaluations
    assert predictor.calls == result.generations + 1


def test_search_is_reproducible_with_a_seed():
    a = [i.arch.id for i in evolve(TargetPredictor(), config(seed=4), SHAPE, CLASSES).history]
    b = [i.arch.id for i in evolve(TargetPredictor(), config(seed=4), SHAPE, CLASSES).history]
    c = [i.arch.id for i in evolve(TargetPredictor(), config(seed=5), SHAPE, CLASSES).history]
    assert a == b and a != c


@pytest.mark.parametrize("policy", ["tournament", "proportional", "youngest"])
def test_evolution_beats_random_search_on_a_known_optimum(policy):
    cfg = config(population=50, iterations=200, survivors=40, max_params=2_000_000, policy=policy)
    evo = evolve(TargetPredictor(), cfg, SHAPE, CLASSES)
    rnd = random_search(TargetPredictor(), cfg, SHAPE, CLASSES, evaluations=evo.evaluations)
    best_evo, best_rnd = evo.feasible()[0], rnd.feasible()[0]
    gap_evo, gap_rnd = 100 - best_evo.fitness, 100 - best_rnd.fitness
    assert gap_evo < 0.5 * gap_rnd, (gap_evo, gap_rnd)
    if policy == "tournament":
        assert gap_evo <= 0.5 and gap_evo < 0.1 * gap_rnd  # at most two residual blocks from the optimum
        first = next(e for e, b in evo.best_so_far if b >= best_rnd.fitness)
        assert first < evo.evaluations / 4  # reaches random search's best with far fewer evaluations


def test_pareto_front_is_non_dominated():
    result = evolve(TargetPredictor(), config(iterations=5), SHAPE, CLASSES)
    front = pareto_front(result.feasible())
    for p in front:
        for q in result.feasible():
            better_eq = (q.pred["acc_1d"] >= p.pred["acc_1d"] and q.pred["avm"] <= p.pred["avm"]
                         and q.n_params <= p.n_params)
            strictly = (q.pred["acc_1d"] > p.pred["acc_1d"] or q.pred["avm"] < p.pred["avm"]
                        or q.n_params < p.n_params)
            assert not (better_eq and strictly)


def search_args(tmp_path, *extra):
    return ["--predictor", '{"class_path": "stub_predictor.TargetPredictor"}', "--task", "digits", "--out_dir", str(tmp_path / "s"),
            "--search.population", "30", "--search.iterations", "10", "--search.survivors", "20",
            "--search.max_params", "200000", "--baseline_random", "true", *extra]


def test_search_command_writes_reloadable_outputs(tmp_path, capsys):
    search_cmd.main(search_args(tmp_path))
    out = tmp_path / "s"
    winners = sorted((out / "winners").glob("winner_*.yaml"))
    assert len(winners) == 3
    first = yaml.safe_load(winners[0].read_text())
    arch = load_architecture(str(winners[0]))  # what fit/retrain accept
    assert arch.id == first["arch_id"] and first["n_params"] < 200_000
    history = list(csv.DictReader((out / "history.csv").open()))
    assert len(history) == len({r["arch_id"] for r in history}) > 30
    assert {"arch_id", "pred_acc_1d", "pred_avm", "n_params", "generation", "architecture"} <= set(history[0])
    pareto = list(csv.DictReader((out / "pareto.csv").open()))
    assert pareto and all(Architecture.from_json(r["architecture"]) for r in pareto)
    assert (out / "best_so_far.png").stat().st_size > 1000 and (out / "pareto.png").stat().st_size > 1000
    printed = capsys.readouterr()
    assert first["arch_id"] in printed.out and "random search" in printed.err


def test_infeasible_constraints_are_a_clear_message(tmp_path):
    with pytest.raises(UserError, match="raise search.max_avm"):
        search_cmd.main(search_args(tmp_path, "--search.max_avm", "0.5"))
    with pytest.raises(UserError, match="raise search.max_params"):
        search_cmd.main(search_args(tmp_path, "--search.max_params", "100"))
    with pytest.raises(UserError, match="no surrogate"):
        search_cmd.main(["--predictor", str(tmp_path), "--out_dir", str(tmp_path / "x")])
    custom = [a for a in search_args(tmp_path) if a not in ("--task", "digits")]
    with pytest.raises(UserError, match="records no task: give --task"):
        search_cmd.main(custom)
    with pytest.raises(UserError, match="unknown task 'mnist'"):
        search_cmd.main(search_args(tmp_path, "--task", "mnist"))


@pytest.mark.slow
def test_retrain_winner_and_baseline_end_to_end(tmp_path):
    from conftest import ROOT

    search_cmd.main(search_args(tmp_path, "--search.max_params", "20000", "--top_k", "1"))
    retrain.main(["--fit_config", str(ROOT / "configs" / "digits" / "fit.yaml"), "--winners", str(tmp_path / "s" / "winners"),
                  "--baseline", "resnet20", "--out_dir", str(tmp_path / "r"),
                  "--fit_args", '["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", '
                  '"--drift.n_reps", "2", "--trainer.enable_progress_bar", "false"]'])
    rows = list(csv.DictReader((tmp_path / "r" / "comparison.csv").open()))
    assert [r["name"] for r in rows] == ["winner_1", "baseline_resnet20"]
    winner = yaml.safe_load((tmp_path / "s" / "winners" / "winner_1.yaml").read_text())
    assert rows[0]["arch_id"] == winner["arch_id"] and int(rows[1]["n_params"]) == 272_186
    for r in rows:
        assert float(r["avm"]) == pytest.approx(float(r["acc_1s"]) - float(r["acc_30d"]), abs=1e-6)
    assert "| winner_1 |" in (tmp_path / "r" / "comparison.md").read_text()
