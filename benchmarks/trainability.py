"""Trainability of random architectures under hardware-aware training (digits).

Samples seeded random architectures under a parameter budget, trains each digitally with the
default budget of ``configs/digits/fit.yaml`` (read from that file: epochs, lr and schedule, batch
size, seed) and keeps the first ``--n`` that reach ``--threshold`` % test accuracy (the learnable
ones). Each kept architecture is then trained hardware-aware (preset ``pcm_hwa``) with the same
number of epochs in the ways given by ``--ways``:

* ``scratch``: analog from the first step with aihwkit's own input-range initialisation
  (``input_range_calibration: 0``, no warm-up: the recipe before issue 15);
* ``calibrated``: analog from the first step, input ranges calibrated from a digital pass;
* ``default``: the recipe of ``configs/digits/fit.yaml`` (its digital warm-up, then hardware-aware
  training with calibrated input ranges).

and programmed and drifted (``--n-reps`` programmings). Prints, per way, how many reach the
threshold in 1-day accuracy after drift, and the distribution of the 1-day accuracy.

    .venv/bin/python benchmarks/trainability.py --n 40 --ways scratch default
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from lightning_nas.callbacks import DriftEvaluation  # noqa: E402
from lightning_nas.data.digits import DigitsDataModule  # noqa: E402
from lightning_nas.module import AnalogNASModule  # noqa: E402
from lightning_nas.space import sample  # noqa: E402
from lightning_nas.training import fit_and_evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_WARMUP = {"digital_warmup_epochs": 0, "digital_warmup_fraction": 0.0}
WAYS = {"scratch": {"input_range_calibration": 0, **NO_WARMUP}, "calibrated": NO_WARMUP, "default": {}}


def default_budget(path: Path = ROOT / "configs" / "digits" / "fit.yaml") -> dict:
    """The training budget of the default fit config (what ``fit --config configs/digits/fit.yaml`` does)."""
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    return {"epochs": config["trainer"]["max_epochs"], "seed": config.get("seed_everything", 0),
            "batch_size": config["data"]["init_args"].get("batch_size", 64),
            "module": {k: model[k] for k in ("lr", "lr_schedule", "digital_warmup_epochs",
                                                  "digital_warmup_fraction") if k in model}}


class DigitalNetwork(AnalogNASModule):
    """The same module, never converted to analog layers (the digital reference)."""

    def convert_to_analog(self) -> None:
        pass

    def on_fit_start(self) -> None:
        pass


def trainer(epochs: int, callbacks: list) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     accelerator="cpu", devices=1)


def digital_accuracy(arch, budget: dict) -> float:
    L.seed_everything(budget["seed"], verbose=False)
    dm = DigitsDataModule(batch_size=budget["batch_size"], seed=budget["seed"])
    model = DigitalNetwork(arch.to_dict(), input_shape=dm.input_shape, num_classes=dm.num_classes,
                           **{**budget["module"], **NO_WARMUP, "digital_warmup_epochs": budget["epochs"]})
    t = trainer(budget["epochs"], [])
    t.fit(model, datamodule=dm)
    return float(t.test(model, datamodule=dm, verbose=False)[0]["test/acc"])  # % (PercentAccuracy)


def analog_run(arch, budget: dict, n_reps: int, bn_recalibration: int = 0, **overrides) -> dict:
    """Train hardware-aware and evaluate after drift; with ``bn_recalibration`` the same trained model
    is also evaluated with BatchNorm statistics re-estimated on the programmed chip (key ``bn``)."""
    L.seed_everything(budget["seed"], verbose=False)
    dm = DigitsDataModule(batch_size=budget["batch_size"], seed=budget["seed"])
    model = AnalogNASModule(arch.to_dict(), input_shape=dm.input_shape, num_classes=dm.num_classes,
                            **{**budget["module"], **overrides})
    drift = DriftEvaluation(n_reps=n_reps, seed=budget["seed"], verbose=False, save_json=False)
    t = trainer(budget["epochs"], [drift])
    result = fit_and_evaluate(model, dm, t)
    out = {"test_acc": result.test_acc, **result.drift}
    if bn_recalibration:
        adabs = DriftEvaluation(n_reps=n_reps, seed=budget["seed"], verbose=False, save_json=False,
                                bn_recalibration=bn_recalibration)
        summary = adabs.evaluate(model, dm.test_dataloader())
        out["bn"] = {name.split("/", 1)[-1]: value for name, value in summary.items()}
    return out


def quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return str(values)
    q = statistics.quantiles(values, n=4)
    return f"min {min(values):5.1f}  q1 {q[0]:5.1f}  median {q[1]:5.1f}  q3 {q[2]:5.1f}  max {max(values):5.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="learnable architectures to keep")
    ap.add_argument("--max-params", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--epochs", type=int, default=None, help="override the config's max_epochs")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="override the config's batch size (64: the recipe before batches of 16)")
    ap.add_argument("--threshold", type=float, default=80.0)
    ap.add_argument("--n-reps", type=int, default=3)
    ap.add_argument("--ways", nargs="+", default=["scratch", "default"], choices=list(WAYS))
    ap.add_argument("--max-sampled", type=int, default=200, help="give up after this many sampled architectures")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--bn-recalibration", type=int, default=0, metavar="BATCHES",
                    help="also evaluate each trained model with BatchNorm statistics re-estimated on the "
                         "programmed chip from this many training batches (DriftEvaluation.bn_recalibration)")
    ap.add_argument("--reuse-digital", type=str, default=None, metavar="JSON",
                    help="take the digital accuracies from an earlier --json of the same budget and seed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    budget = default_budget()
    if args.epochs is not None:
        budget["epochs"] = args.epochs
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise SystemExit(f"error: --batch-size must be >= 1, got {args.batch_size}")
        budget["batch_size"] = args.batch_size
    print(f"budget (configs/digits/fit.yaml{' with overrides' if args.epochs is not None or args.batch_size is not None else ''}): {budget}",
          flush=True)
    warnings.filterwarnings("ignore")
    import logging

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    start = time.perf_counter()
    archs = sample(args.max_sampled, seed=args.seed, method="uniform", max_params=args.max_params,
                   in_shape=(1, 8, 8), n_classes=10)
    kept, sampled, records = [], 0, []
    reused = {}
    if args.reuse_digital:
        earlier = json.loads(Path(args.reuse_digital).read_text())
        same = {k: earlier["budget"][k] for k in ("epochs", "seed", "batch_size")} == \
            {k: budget[k] for k in ("epochs", "seed", "batch_size")} and earlier["args"]["seed"] == args.seed \
            and {k: v for k, v in earlier["budget"]["module"].items() if "warmup" not in k} == \
            {k: v for k, v in budget["module"].items() if "warmup" not in k}
        if not same:
            raise SystemExit(f"error: {args.reuse_digital} was made with another budget or sampling seed "
                             f"({earlier['budget']}, seed {earlier['args']['seed']}); drop --reuse-digital")
        reused = {r["arch_id"]: r["digital_acc"] for r in earlier["records"]}
    for arch in archs:
        if len(kept) == args.n:
            break
        sampled += 1
        acc = reused[arch.id] if arch.id in reused else digital_accuracy(arch, budget)
        record = {"arch_id": arch.id, "describe": arch.describe(), "digital_acc": acc}
        records.append(record)
        if acc < args.threshold:
            print(f"  {arch.describe():<32} digital {acc:5.1f}  (not learnable in this budget: skipped)", flush=True)
            continue
        kept.append(arch)
        line = f"  {arch.describe():<32} digital {acc:5.1f}"
        for way in args.ways:
            record[way] = analog_run(arch, budget, args.n_reps, args.bn_recalibration, **WAYS[way])
            line += f"  {way} acc_1d {record[way]['acc_1d']:5.1f}"
            if args.bn_recalibration:
                record[f"{way}+bn"] = record[way].pop("bn")
                line += f"  {way}+bn acc_1d {record[f'{way}+bn']['acc_1d']:5.1f}"
        print(line, flush=True)
    print(f"\n{sampled} architectures sampled (< {args.max_params:,} parameters, seed {args.seed}), "
          f"{len(kept)} reach {args.threshold:g} % digitally in {budget['epochs']} epochs; "
          f"{time.perf_counter() - start:.0f} s")
    learnable = [r for r in records if r["digital_acc"] >= args.threshold]
    for way in [w + suffix for w in args.ways for suffix in ("", "+bn") if suffix == "" or args.bn_recalibration]:
        accs = [r[way]["acc_1d"] for r in learnable]
        ok = sum(a >= args.threshold for a in accs)
        print(f"{way:<8} {ok}/{len(accs)} = {100 * ok / max(1, len(accs)):5.1f} % reach {args.threshold:g} % "
              f"1-day accuracy after drift;  acc_1d {quartiles(accs)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "budget": budget, "records": records}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
