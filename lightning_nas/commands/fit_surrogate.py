"""``python -m lightning_nas fit-surrogate --config configs/digits/surrogate.yaml``.

Trains the surrogates on a campaign's rows and reports their quality on held-out rows:
an XGBoost ``rank:pairwise`` ranker for 1-day accuracy (Kendall tau, Spearman rho),
XGBoost regressors for AVM and 1-day std (MAE, R^2), and for comparison an MLP ranker
trained with the pairwise hinge loss. Writes the models (xgboost JSON), metadata, a
report and scatter plots of predicted vs measured.
"""

from __future__ import annotations

import sys
from typing import Optional

from jsonargparse import ActionConfigFile
from tqdm import tqdm

from lightning_nas.parsing import CommandParser
from lightning_nas.surrogate.ceiling import format_ceiling
from lightning_nas.surrogate.data import load_replicates, load_rows, load_task
from lightning_nas.surrogate.fitting import fit_steps, fit_surrogate
from lightning_nas.surrogate.mlp import MLPParams
from lightning_nas.surrogate.models import XGBParams
from lightning_nas.surrogate.report import models_table


def build_parser() -> CommandParser:
    parser = CommandParser(command="fit-surrogate", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--data", type=str, required=True, help="Campaign store (.sqlite) or its CSV export.")
    parser.add_argument("--out_dir", type=str, default="runs/surrogate")
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--kfold", type=int, default=0, help="Also report k-fold cross-validation (k >= 2).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learned_threshold", type=Optional[float], default=None,
                        help="Accuracy (%%) at 1 s from which an architecture counts as learned: the AVM and std "
                             "models use those rows only, a classifier predicts p_learned (default: a quarter of "
                             "the way from chance to 100 %%; 0 = every row).")
    parser.add_class_arguments(XGBParams, "xgb")
    parser.add_class_arguments(MLPParams, "mlp")
    return parser


def main(argv: list[str]) -> None:
    cfg = build_parser().parse_args(argv)
    rows = load_rows(cfg.data)
    with tqdm(total=fit_steps(cfg.kfold), desc="fit-surrogate", unit="step", dynamic_ncols=True) as bar:
        def progress(step: str) -> None:  # the step that starts now; the one before is done
            if bar.postfix:
                bar.update(1)
            bar.set_postfix_str(step)

        fit = fit_surrogate(rows, test_fraction=cfg.test_fraction, kfold=cfg.kfold, seed=cfg.seed,
                            xgb=XGBParams(**cfg.xgb.as_dict()), mlp=MLPParams(**cfg.mlp.as_dict()),
                            source=str(cfg.data), task=load_task(cfg.data, rows),
                            replicates=load_replicates(cfg.data), learned_threshold=cfg.learned_threshold,
                            diverged=load_rows(cfg.data, status="diverged"), progress=progress)
        written = fit.save(cfg.out_dir, progress)
        bar.update(bar.total - bar.n)
    report = fit.report
    print(f"surrogate trained on {report['n_train']} rows, evaluated on {report['n_test']} held-out rows:",
          file=sys.stderr)
    learned = report["learned"]
    print(f"learned (acc_1s >= {learned['threshold']:g} %): {learned['rows']} of {len(rows)} rows "
          f"({100 * learned['share']:.0f} %); AVM and std models fitted on {learned['n_train']}, "
          f"scored on {learned['n_test']} held-out rows; {learned['diverged_rows']} diverged rows count as not "
          "learned for the learned classifier", file=sys.stderr)
    folds = f"; {cfg.kfold}-fold cross-validation" if cfg.kfold else ""
    print(f"models (held out: {report['n_test']} rows{folds}):\n" + models_table(report["holdout"], report.get("kfold")))
    print("\nmodel comparison:\n" + report["comparison"])
    print("\n" + format_ceiling(report["ceiling"]))
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"\nsaved to {cfg.out_dir}/ ({', '.join(p.name for p in written)}); every metric of every model is in "
          "report.json", file=sys.stderr)
