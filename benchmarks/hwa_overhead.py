"""Overhead of analog hardware-aware (HWA) training/evaluation versus plain digital PyTorch.

For every batch size, each *path* (a named model factory in ``PATHS``) gets a copy of
the same digital network weights and is timed on the same random inputs:

* ``train``: one training step (forward, cross-entropy backward, optimizer step, ``model.train()``);
* ``eval``:  one evaluation forward (``model.eval()``, ``torch.no_grad()``).

Reported times are the median over ``--iters`` timed iterations after ``--warmup``
untimed ones; ratios are always relative to the ``digital`` path.

    .venv/bin/python benchmarks/hwa_overhead.py --arch resnet32 --batch-sizes 32 128 --iters 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Callable

import torch
from torch import nn

from lightning_nas import periphery
from lightning_nas.analog import AnalogConfig, convert
from lightning_nas.network import build_network
from lightning_nas.space import load_architecture

LR, MOMENTUM = 0.01, 0.9


def digital_path(net: nn.Module, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = copy.deepcopy(net).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def analog_path(implementation: str, periphery: str = "auto"
                ) -> Callable[[nn.Module, torch.device], tuple[nn.Module, torch.optim.Optimizer]]:
    """The default preset ``pcm_hwa`` computed by ``implementation`` ("aihwkit" or "fast"); the
    fast path's element-wise periphery runs the backend ``periphery`` (see lightning_nas.periphery)."""

    def factory(net: nn.Module, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        from aihwkit.optim import AnalogSGD

        config = AnalogConfig(preset="pcm_hwa", implementation=implementation)
        model = convert(copy.deepcopy(net), config).to(device)
        return model, AnalogSGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    factory.periphery = periphery
    return factory


# name -> factory(digital net on CPU, device) -> (model on device, its optimizer). "digital" must stay first: it is the reference.
PATHS: dict[str, Callable[[nn.Module, torch.device], tuple[nn.Module, torch.optim.Optimizer]]] = {
    "digital": digital_path,
    "aihwkit": analog_path("aihwkit"),
    "fast": analog_path("fast"),  # the default: native C kernel on CPU, torch.compile on CUDA
    "fast-eager": analog_path("fast", periphery="eager"),  # the same with eager PyTorch element-wise ops
}


def median_ms(fn: Callable[[], None], device: torch.device, warmup: int, iters: int) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            device: torch.device, warmup: int, iters: int) -> dict[str, float]:
    loss_fn = nn.CrossEntropyLoss()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def eval_forward() -> None:
        with torch.no_grad():
            model(x)

    # Eval first: it leaves weights and BN statistics untouched, so every path is evaluated
    # on exactly the same weights.
    model.eval()
    eval_ms = median_ms(eval_forward, device, warmup, iters)
    model.train()
    train_ms = median_ms(train_step, device, warmup, iters)
    return {"train_ms": train_ms, "eval_ms": eval_ms}


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
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    paths = ["digital"] + [name for name in args.paths if name != "digital"]
    backend = periphery.backend_setting()

    import aihwkit
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "aihwkit": aihwkit.__version__, "threads": torch.get_num_threads(),
            "arch": args.arch, "input_shape": args.input_shape, "num_classes": args.num_classes,
            "warmup": args.warmup, "iters": args.iters,
            "periphery": {n: getattr(PATHS[n], "periphery", "-") for n in paths if n != "digital"}}
    print("  ".join(f"{k}={v}" for k, v in meta.items()))

    torch.manual_seed(args.seed)
    net = build_network(load_architecture(args.arch), args.input_shape, args.num_classes)
    results = []
    for bs in args.batch_sizes:
        gen = torch.Generator().manual_seed(args.seed + bs)
        x = torch.randn(bs, *args.input_shape, generator=gen).to(device)
        y = torch.randint(0, args.num_classes, (bs,), generator=gen).to(device)
        row: dict[str, dict[str, float]] = {}
        for name in paths:
            os.environ[periphery.ENV] = getattr(PATHS[name], "periphery", "auto")
            model, opt = PATHS[name](net, device)
            row[name] = measure(model, opt, x, y, device, args.warmup, args.iters)
            del model, opt
        os.environ[periphery.ENV] = backend
        for name in paths:
            r = row[name]
            r["train_ratio"] = r["train_ms"] / row["digital"]["train_ms"]
            r["eval_ratio"] = r["eval_ms"] / row["digital"]["eval_ms"]
            results.append({"batch_size": bs, "path": name, **r})

    header = f"{'batch':>5}  {'path':<10} {'train ms':>10} {'eval ms':>10} {'train x':>8} {'eval x':>8}"
    print(header + "\n" + "-" * len(header))
    for r in results:
        print(f"{r['batch_size']:>5}  {r['path']:<10} {r['train_ms']:>10.1f} {r['eval_ms']:>10.1f} "
              f"{r['train_ratio']:>8.2f} {r['eval_ratio']:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
