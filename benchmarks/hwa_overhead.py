"""Overhead of analog hardware-aware (HWA) training/evaluation versus plain digital PyTorch.

For every batch size, each *path* (a named model factory in ``PATHS``) gets a copy of
the same digital network weights and is timed on the same random inputs:

* ``train``: one training step (forward, cross-entropy backward, optimizer step, ``model.train()``);
* ``eval``:  one evaluation forward (``model.eval()``, ``torch.no_grad()``).

Reported times are the median over ``--iters`` timed rounds after ``--warmup`` untimed
ones; in every round each path runs once, in turn. Ratios are always relative to the
``digital`` path. Training is timed after the tiles' input ranges are initialised from
data (``--input-range-init done``, the steady state) unless ``running`` is asked for.

    .venv/bin/python benchmarks/hwa_overhead.py --arch resnet32 --batch-sizes 32 128 --iters 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from lightning_nas import periphery
from lightning_nas.analog import AnalogConfig
from lightning_nas.compilation import compile_network
from lightning_nas.fast_analog import mark_ranges_initialised
from lightning_nas.conversion import convert
from lightning_nas.network import build_network
from lightning_nas.space import load_architecture

LR, MOMENTUM = 0.01, 0.9


def digital_path(net: nn.Module, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = copy.deepcopy(net).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def compiled(factory: Callable, mode: str) -> Callable:
    """``factory``'s model run as :class:`lightning_nas.compilation.CompiledNetwork` (``torch.compile``
    of the whole network, ``mode``), its input ranges counted as initialised (a compiled analog network
    runs eagerly until they are)."""

    def wrapped(net: nn.Module, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        model, opt = factory(net, device)
        mark_ranges_initialised(model)
        return model, opt

    wrapped.periphery = getattr(factory, "periphery", "auto")
    wrapped.compile = mode
    return wrapped


def analog_path(implementation: str, periphery: str = "auto"
                ) -> Callable[[nn.Module, torch.device], tuple[nn.Module, torch.optim.Optimizer]]:
    """The default preset ``pcm_hwa`` computed by ``implementation`` ("aihwkit" or "fast"); the
    fast path's element-wise periphery runs the backend ``periphery`` (see lightning_nas.periphery)."""

    def factory(net: nn.Module, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        from lightning_nas.analog_sgd import FastAnalogSGD

        config = AnalogConfig(preset="pcm_hwa", implementation=implementation)
        model = convert(copy.deepcopy(net), config).to(device)
        return model, FastAnalogSGD(model.parameters(), lr=LR, momentum=MOMENTUM)  # the module's optimizer

    factory.periphery = periphery
    return factory


# name -> factory(digital net on CPU, device) -> (model on device, its optimizer). "digital" must stay first: it is the reference.
PATHS: dict[str, Callable[[nn.Module, torch.device], tuple[nn.Module, torch.optim.Optimizer]]] = {
    "digital": digital_path,
    "aihwkit": analog_path("aihwkit"),
    "fast": analog_path("fast"),  # the default: native C kernel on CPU, torch.compile on CUDA
    "fast-eager": analog_path("fast", periphery="eager"),  # the same with eager PyTorch element-wise ops
    # The whole network through torch.compile (model.compile: auto on CUDA), and with CUDA graphs.
    "fast-compiled": compiled(analog_path("fast", periphery="eager"), "default"),
    "fast-cudagraphs": compiled(analog_path("fast", periphery="eager"), "reduce-overhead"),
    "digital-compiled": compiled(digital_path, "default"),
}


class Runner:
    """One path's model, optimizer and its two timed operations on fixed inputs."""

    def __init__(self, name: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.name, self.x, self.y, self.device = name, x, y, device
        self.periphery = getattr(PATHS[name], "periphery", "auto")
        with self.backend():
            self.model, self.opt = PATHS[name](net, device)
        mode = getattr(PATHS[name], "compile", None)
        self.run = compile_network(self.model, mode) if mode else self.model
        self.first_ms: dict[str, float] = {}  # the first call of each operation (compilation included)
        self.loss_fn = nn.CrossEntropyLoss()

    def backend(self) -> Any:
        """Run with the path's periphery backend (lightning_nas.periphery reads it per call)."""
        return periphery.using(self.periphery)

    def train_step(self) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.loss_fn(self.run(self.x), self.y).backward()
        self.opt.step()

    def eval_forward(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.run(self.x)

    def timed(self, op: str) -> float:
        with self.backend():
            sync(self.device)
            start = time.perf_counter()
            getattr(self, op)()
            sync(self.device)
        ms = (time.perf_counter() - start) * 1e3
        self.first_ms.setdefault(op, ms)
        return ms

    def finish_input_range_init(self) -> None:
        mark_ranges_initialised(self.model)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(runners: list[Runner], op: str, warmup: int, iters: int) -> dict[str, float]:
    """Median ms of ``op`` per path; the paths take turns in every round, so a machine that
    speeds up or slows down during the run affects every path alike."""
    for _ in range(warmup):
        for r in runners:
            r.timed(op)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(iters):
        for r in runners:
            times[r.name].append(r.timed(op))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet32", help="preset name or architecture file")
    p.add_argument("--input-shape", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    p.add_argument("--paths", nargs="+", default=["digital", "aihwkit", "fast", "fast-eager"], choices=list(PATHS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-range-init", choices=["done", "running"], default="done",
                   help="time training after the tiles' input ranges are initialised from data (done, the "
                        "steady state) or during that phase (running: the first init_from_data=100 batches)")
    p.add_argument("--max-batch", nargs="+", default=[], metavar="PATH=N",
                   help="run PATH only up to batch size N (e.g. aihwkit=128: its unfolded activations "
                        "need more than 24 GB of RAM at batch 512)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON (after every batch size)")
    args = p.parse_args()
    try:
        max_batch = {k: int(v) for k, v in (item.split("=") for item in args.max_batch)}
    except ValueError:
        p.error(f"--max-batch takes PATH=N pairs, got {args.max_batch}")

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    paths = ["digital"] + [name for name in args.paths if name != "digital"]

    import aihwkit
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "aihwkit": aihwkit.__version__, "threads": torch.get_num_threads(),
            "arch": args.arch, "input_shape": args.input_shape, "num_classes": args.num_classes,
            "warmup": args.warmup, "iters": args.iters, "input_range_init": args.input_range_init,
            "max_batch": max_batch, "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "-"),
            "periphery": {n: getattr(PATHS[n], "periphery", "-") for n in paths if n != "digital"}}
    print("  ".join(f"{k}={v}" for k, v in meta.items()))

    torch.manual_seed(args.seed)
    net = build_network(load_architecture(args.arch), args.input_shape, args.num_classes)
    header = (f"{'batch':>5}  {'path':<16} {'train ms':>10} {'eval ms':>10} {'train x':>8} {'eval x':>8} "
              f"{'1st train s':>11} {'1st eval s':>10}")
    print(header + "\n" + "-" * len(header), flush=True)
    results = []
    for bs in args.batch_sizes:
        gen = torch.Generator().manual_seed(args.seed + bs)
        x = torch.randn(bs, *args.input_shape, generator=gen).to(device)
        y = torch.randint(0, args.num_classes, (bs,), generator=gen).to(device)
        names = [n for n in paths if bs <= max_batch.get(n, bs)]
        runners = [Runner(name, net, x, y, device) for name in names]
        # Eval first: it leaves weights and BN statistics untouched, so every path is evaluated
        # on exactly the same weights.
        eval_ms = measure(runners, "eval_forward", args.warmup, args.iters)
        for r in runners:
            r.timed("train_step")  # the first step initialises the input ranges from data (and compiles)
            if args.input_range_init == "done":
                r.finish_input_range_init()
        train_ms = measure(runners, "train_step", args.warmup, args.iters)
        first = {r.name: r.first_ms for r in runners}  # compilation is in a compiled path's first calls
        del runners
        for name in names:  # printed (and saved) per batch size: a later crash loses nothing
            r = {"batch_size": bs, "path": name, "train_ms": train_ms[name], "eval_ms": eval_ms[name],
                 "train_ratio": train_ms[name] / train_ms["digital"], "eval_ratio": eval_ms[name] / eval_ms["digital"],
                 "first_train_s": first[name]["train_step"] / 1e3, "first_eval_s": first[name]["eval_forward"] / 1e3}
            results.append(r)
            print(f"{bs:>5}  {name:<16} {r['train_ms']:>10.1f} {r['eval_ms']:>10.1f} "
                  f"{r['train_ratio']:>8.2f} {r['eval_ratio']:>8.2f} {r['first_train_s']:>11.1f} "
                  f"{r['first_eval_s']:>10.1f}", flush=True)
        for name in sorted(set(paths) - set(names)):
            print(f"{bs:>5}  {name:<16} {'skipped (--max-batch)':>30}", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
