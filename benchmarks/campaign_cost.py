"""Cost of the real-task campaigns (``configs/<task>/campaign.yaml``) per architecture, measured.

For each task, samples ``--archs`` architectures under the campaign's ``max_params`` (seeded, like
the campaign), and times on random tensors of the task's input shape, with the campaign's batch
size: hardware-aware training steps (forward + backward + AnalogSGD step), evaluation forwards
of the analog model, and one programming + drift of all tiles. From those it extrapolates one
architecture's campaign job: ``epochs x train_fraction x train split / batch`` training steps
(the warm-up epochs are timed as digital steps), one validation pass per epoch, the test pass and
``n_reps x len(t_inference)`` drift evaluations of ``drift_samples`` samples. The official split
sizes are constants below. Prints seconds per architecture (median over the sample) and the time of
the whole campaign on one device; ``--device cuda`` measures a GPU.

    .venv/bin/python benchmarks/campaign_cost.py --archs 5 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

from lightning_nas.analog import AnalogConfig  # noqa: E402
from lightning_nas.conversion import convert  # noqa: E402
from lightning_nas.network import build_network  # noqa: E402
from lightning_nas.space import n_params, sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Official split sizes (training split after the datamodule's validation hold-out, validation, test).
SPLITS = {"cifar10": (45_000, 5_000, 10_000), "kws": (37_000, 4_700, 4_900), "vww": (98_000, 11_000, 6_000)}
SHAPES = {"cifar10": (3, 32, 32), "kws": (1, 49, 10), "vww": (3, 96, 96)}
CLASSES = {"cifar10": 10, "kws": 12, "vww": 2}


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, first-call costs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def step_times(arch, task: str, batch: int, steps: int, device: str) -> dict[str, float]:
    """Seconds per step as a campaign row runs them: the module's optimizer and, where ``model.compile:
    auto`` compiles (CUDA), the compiled network (its compilation, once per architecture and
    train/eval, is ``compile_s``; the drift evaluation runs eagerly on a copy)."""
    from lightning_nas.analog_sgd import FastAnalogSGD
    from lightning_nas.compilation import compile_mode, compile_network
    from lightning_nas.fast_analog import mark_ranges_initialised

    shape, classes = SHAPES[task], CLASSES[task]
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    digital = build_network(arch, shape, classes).to(device)
    opt = torch.optim.SGD(digital.parameters(), lr=0.01, momentum=0.9)

    def train(net, optimizer):
        def step():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
        return step

    out = {"digital_step": timed(train(digital, opt), steps)}
    analog = convert(digital, AnalogConfig()).to(device)
    mode = compile_mode("auto", torch.device(device), analog=True)
    run = compile_network(analog, mode) if mode else analog
    analog.train()
    analog(x)  # the first batch initialises the input ranges from data; the steady state follows
    mark_ranges_initialised(analog)
    step = train(run, FastAnalogSGD(analog.parameters(), lr=0.01, momentum=0.9))
    start = time.perf_counter()
    step()  # compiles (forward and backward) where compiled
    analog.eval()
    with torch.no_grad():
        run(x)
    out["compile_s"] = time.perf_counter() - start if mode else 0.0
    analog.train()
    out["analog_step"] = timed(step, steps)
    analog.eval()
    with torch.no_grad():
        out["analog_eval"] = timed(lambda: run(x), steps)
        out["drift_eval"] = timed(lambda: analog(x), steps) if mode else out["analog_eval"]  # eager, on a copy
        out["program_drift"] = timed(lambda: (analog.program_analog_weights(), analog.drift_analog_weights(86400)), 2)
    return out


def campaign_seconds(t: dict[str, float], task: str, config: dict) -> float:
    """Worker seconds of one architecture with a campaign's resolved fit config (``Campaign.config``)."""
    from lightning_nas.fit_config import warmup_epochs

    batch = config["data"]["init_args"]["batch_size"]
    train, val, test = SPLITS[task]
    steps_per_epoch = config["data"]["init_args"].get("train_fraction", 1.0) * train / batch
    epochs = config["trainer"]["max_epochs"]
    warm = warmup_epochs(config["model"]["init_args"], epochs)
    training = steps_per_epoch * (warm * t["digital_step"] + (epochs - warm) * t["analog_step"])
    validation = epochs * val / batch * t["analog_eval"]
    samples = min(test, config["drift"].get("max_samples") or test)
    reps, times = config["drift"]["n_reps"], len(config["drift"]["t_inference"])
    drift = reps * (t["program_drift"] + times * samples / batch * t.get("drift_eval", t["analog_eval"]))
    return training + validation + test / batch * t["analog_eval"] + drift + t.get("compile_s", 0.0)


def campaign_of(task: str) -> tuple[dict, dict]:
    """The shipped campaign config of ``task`` and its resolved fit config (budget applied)."""
    from lightning_nas.campaign.campaign import Campaign, Sampling
    from lightning_nas.campaign.train import Budget

    raw = yaml.safe_load((ROOT / "configs" / task / "campaign.yaml").read_text())
    campaign = Campaign.from_fit_config(str(ROOT / raw["fit_config"]), raw.get("fit_args", []),
                                        Budget(**raw.get("budget", {})), Sampling(**raw["sampling"]))
    return raw, campaign.config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=sorted(SPLITS))
    ap.add_argument("--archs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}")
    for task in args.tasks:
        campaign, config = campaign_of(task)
        s = campaign["sampling"]
        batch = config["data"]["init_args"]["batch_size"]
        archs = sample(args.archs, seed=s["seed"], method="uniform", max_params=s["max_params"],
                       in_shape=SHAPES[task], n_classes=CLASSES[task])
        per_arch = []
        for arch in archs:
            t = step_times(arch, task, batch, args.steps, args.device)
            seconds = campaign_seconds(t, task, config)
            per_arch.append(seconds)
            print(f"  {task:<8} {arch.describe():<36} {n_params(arch, SHAPES[task], CLASSES[task]):>9,} params  "
                  f"step digital {t['digital_step'] * 1e3:7.1f} ms, analog {t['analog_step'] * 1e3:7.1f} ms "
                  f"(x{t['analog_step'] / t['digital_step']:.1f}), eval {t['analog_eval'] * 1e3:6.1f} ms  "
                  f"-> {seconds / 60:6.1f} min per architecture", flush=True)
        median = statistics.median(per_arch)
        total_h = median * s["n"] / 3600
        print(f"{task}: median {median / 60:.1f} min per architecture; {s['n']} architectures: {total_h:.0f} h on one "
              f"device ({total_h / 8:.1f} h on 8)\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
