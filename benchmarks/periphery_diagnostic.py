"""Watch the analog periphery (DAC, ADC, input ranges, output scales) while an architecture trains.

Trains one architecture with the same module, optimizer, schedule and data as ``fit``
(``AnalogNASModule`` + a task datamodule, Lightning ``Trainer``), and every ``--every``
optimizer steps prints one row per analog layer (aihwkit ``AnalogConv2d``/``AnalogLinear``,
``FastAnalogConv2d`` included; one row per tile when a layer is split):

  r        the tile's input range (DAC full scale); ``idx`` = batches used so far for its
           initialisation from data (``pre_post.input_range.init_from_data``)
  dacclip  % of the tile's (unfolded) inputs at or beyond +-r (clipped by the DAC)
  x/LSB    rms of the DAC input after clip/scale/quantise, in DAC steps
  y/bnd    rms of the analog MVM output (normalised weights x DAC codes) / forward.out_bound
  y/LSB    the same in ADC steps (2 * out_bound * out_res)
  adcclip  % of MVM outputs at or beyond +-out_bound (clipped by the ADC)
  zero     % of MVM outputs that the ADC rounds to 0 (|y| < LSB/2, before noise)
  snr      rms(y) / forward.out_noise
  alpha    learned output scales (mean [min, max]); ``map`` = mean mapping scale
  |gw| |gr| |ga|   gradient norms of the tile weights, the input range, the output scales
  out      rms of the layer's (digital, scaled) output

plus the train loss, the spread of the logits over the batch (``logit_std``: 0 = the
network outputs the same for every input) and, after every epoch, the validation accuracy.
The per-tile statistics are recomputed in a forward hook from the layer's input and the
tile's weights without weight noise and output noise (the same DAC/ADC arithmetic as
``lightning_nas.fast_analog``), so they don't change the training.

Usage (from the repository root)::

    .venv/bin/python benchmarks/periphery_diagnostic.py --arch /tmp/s/winners/winner_1.yaml --epochs 5 --every 20
    # hardware / recipe ablations (AnalogConfig fields, dotted aihwkit paths, module args):
    ... --set out_noise=0 --set out_bits=0 --rpu forward.out_bound=40 --rpu pre_post.input_range.init_from_data=20
    ... --warmup 1 --lr 0.05 --seed 1 --layers stem,classifier --drift     # + drift table at the end
    # input-range initialisation: --calibration 0 = aihwkit's own (3 x std over init_from_data batches,
    # the behaviour before AnalogNASModule.input_range_calibration); --calibration 20 = the module default;
    # --ir-init rms:20 (or std:20, absmax:20) = a forward-pre-hook variant over the first 20 training batches
    ... --arch resnet20 | --arch '{"out_channel0": 16, "kernel0": 7, "stages": [{"R": 1, "B": 2, "widenfact": 3.0}]}'

``--drift`` ends with the test accuracy after programming and drift (1 s ... 30 d, like
``fit``); ``--json FILE`` writes every printed number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

from lightning_nas.analog import AnalogConfig  # noqa: E402


def _value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _pairs(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, _, val = item.partition("=")
        out[key.strip()] = _value(val)
    return out


def _arch(spec: str) -> Any:
    spec = spec.strip()
    if spec.startswith("{"):
        return json.loads(spec)
    return spec


def analog_layers(net: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    return [(n, m) for n, m in net.named_modules() if isinstance(m, (AnalogConv2d, AnalogLinear))]


def tiles_of(layer: torch.nn.Module) -> list[tuple[Any, int, int, int, int]]:
    """``(tile, in_lo, in_hi, out_lo, out_hi)`` for every tile of ``layer``."""
    from lightning_nas.fast_analog import _tile_grid

    return [(tile, in_lo, in_hi, o_lo, o_hi) for in_lo, in_hi, row in _tile_grid(layer) for tile, o_lo, o_hi in row]


def _short(name: str) -> str:
    return (name.replace("stages.", "s").replace("branches.", "b").replace("shortcut", "sc")
            .replace(".0.0", "").replace(".analog_module", ""))


def _unfolded(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as the tiles see it: ``(rows, in_features)``."""
    if x.dim() == 4:
        u = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        return u.transpose(1, 2).reshape(-1, u.shape[1])
    return x.reshape(-1, x.shape[-1])


@torch.no_grad()
def tile_stats(layer: torch.nn.Module, x: torch.Tensor, out: torch.Tensor, max_rows: int = 4096) -> list[dict]:
    xu = _unfolded(layer, x.detach().float())
    if xu.shape[0] > max_rows:  # enough for percentages; keeps the hook cheap on big layers
        xu = xu[torch.linspace(0, xu.shape[0] - 1, max_rows).long()]
    rows = []
    for tile, in_lo, in_hi, o_lo, o_hi in tiles_of(layer):
        io = tile.rpu_config.forward
        xs = xu[:, in_lo:in_hi]
        row: dict[str, Any] = {}
        r = tile.input_range
        if r is not None:
            rv = float(r.abs())
            row["r"] = rv
            row["idx"] = int(tile.input_range_update_idx)
            row["dacclip"] = 100.0 * float((xs.abs() >= rv).float().mean())
            xn = torch.clamp(xs, -rv, rv) / rv
        else:
            row["r"], row["idx"], row["dacclip"] = float("nan"), 0, float("nan")
            xn = xs
        step_in = io.inp_res * 2 * io.inp_bound if io.inp_res > 0 and not io.is_perfect else 0.0
        if step_in > 0:
            xn = torch.round(xn / step_in) * step_in
            row["x/LSB"] = float(xn.pow(2).mean().sqrt()) / step_in
        else:
            row["x/LSB"] = float("nan")
        w = tile.tile.weight.detach().float()
        y = xn @ w.t()
        y_rms = float(y.pow(2).mean().sqrt())
        bound = io.out_bound if io.out_bound > 0 and not io.is_perfect else float("inf")
        step_out = io.out_res * 2 * io.out_bound if io.out_res > 0 and not io.is_perfect else 0.0
        row["y/bnd"] = y_rms / bound if math.isfinite(bound) else 0.0
        row["y/LSB"] = y_rms / step_out if step_out > 0 else float("nan")
        row["adcclip"] = 100.0 * float((y.abs() >= bound).float().mean()) if math.isfinite(bound) else 0.0
        row["zero"] = 100.0 * float((y.abs() < step_out / 2).float().mean()) if step_out > 0 else 0.0
        row["snr"] = y_rms / io.out_noise if io.out_noise > 0 and not io.is_perfect else float("inf")
        a = tile.out_scaling_alpha
        if a is not None:
            a = a.detach().view(-1).float()
            row["alpha"], row["alpha_min"], row["alpha_max"] = float(a.mean()), float(a.min()), float(a.max())
        else:
            row["alpha"] = row["alpha_min"] = row["alpha_max"] = float("nan")
        ms = tile.get_mapping_scales()
        row["map"] = float(ms.float().mean()) if torch.is_tensor(ms) else float("nan")
        row["wclip"] = 100.0 * float((w.abs() >= tile.rpu_config.clip.fixed_value - 1e-6).float().mean()) \
            if tile.rpu_config.clip.fixed_value > 0 else 0.0
        o = out.detach()
        o = o[:, o_lo:o_hi] if o.dim() >= 2 else o
        row["out"] = float(o.float().pow(2).mean().sqrt())
        rows.append(row)
    return rows


def grad_norms(layer: torch.nn.Module) -> list[dict]:
    def n(p):
        return float(p.grad.norm()) if p is not None and p.grad is not None else float("nan")

    rows = []
    for tile, *_ in tiles_of(layer):
        rows.append({"|gw|": n(tile.tile.weight), "|w|": float(tile.tile.weight.detach().norm()),
                     "gr": float(tile.input_range.grad.sum()) if tile.input_range is not None
                     and tile.input_range.grad is not None else float("nan"),
                     "|ga|": n(tile.out_scaling_alpha)})
    return rows


COLS = [("r", "{:7.3f}"), ("idx", "{:4d}"), ("dacclip", "{:6.2f}"), ("x/LSB", "{:6.1f}"), ("y/bnd", "{:6.3f}"),
        ("y/LSB", "{:6.1f}"), ("adcclip", "{:6.2f}"), ("zero", "{:5.1f}"), ("snr", "{:6.1f}"), ("alpha", "{:6.3f}"),
        ("alpha_min", "{:6.3f}"), ("alpha_max", "{:6.3f}"), ("map", "{:6.3f}"), ("wclip", "{:5.1f}"),
        ("|gw|", "{:8.2e}"), ("gr", "{:9.2e}"), ("|ga|", "{:8.2e}"), ("out", "{:7.3f}")]


class InputRangeInit:
    """Candidate recipe: initialise every tile's input range from its first ``batches`` training
    inputs with ``alpha * stat`` (running mean over the batches, as aihwkit's ``init_from_data``),
    set in a forward *pre*-hook, so each layer already uses it in the batch it is measured on.
    ``stat``: ``std`` (aihwkit's choice), ``rms`` (sqrt of the second moment: std for zero-mean
    inputs, but also covers the mean of non-negative ones, e.g. pooled post-ReLU features),
    ``absmax`` (max |x| of the batch; alpha is ignored). Run with aihwkit's own init off
    (``pre_post.input_range.init_from_data=0``)."""

    def __init__(self, stat: str, batches: int, alpha: float | None) -> None:
        self.stat, self.batches, self.alpha = stat, batches, alpha

    def __call__(self, mod: torch.nn.Module, args: tuple) -> None:
        if mod.training and torch.is_grad_enabled():  # training steps only (not validation)
            with torch.no_grad():
                self._update(mod, args)

    def _update(self, mod: torch.nn.Module, args: tuple) -> None:
        n = getattr(mod, "_diag_ir_n", 0)
        if n >= self.batches:
            return
        xu = _unfolded(mod, args[0].detach().float())
        for tile, in_lo, in_hi, _, _ in tiles_of(mod):
            if tile.input_range is None:
                continue
            xs = xu[:, in_lo:in_hi]
            alpha = self.alpha if self.alpha is not None else tile.rpu_config.pre_post.input_range.init_std_alpha
            if self.stat == "std":
                v = alpha * xs.std()
            elif self.stat == "rms":
                v = alpha * xs.pow(2).mean().sqrt()
            else:
                v = xs.abs().max()
            if v > 0:
                tile.input_range.data.fill_(float((tile.input_range.abs() * n + v) / (n + 1)) if n else float(v))
        mod._diag_ir_n = n + 1


class PeripheryMonitor(L.Callback):
    def __init__(self, every: int, layers: list[str] | None, log: list, ir_init: InputRangeInit | None = None) -> None:
        self.every, self.filter, self.records = every, layers, log
        self.ir_init = ir_init
        self.handles: list = []
        self.hooked: list = []
        self.stats: dict[str, list[dict]] = {}
        self.logits: torch.Tensor | None = None
        self.recording = False

    def _hook(self, pl_module: L.LightningModule) -> None:
        layers = analog_layers(pl_module.net)
        if [m for _, m in layers] == self.hooked:
            return
        for h in self.handles:
            h.remove()
        self.handles, self.hooked = [], [m for _, m in layers]
        for name, m in layers:
            if self.ir_init is not None:
                self.handles.append(m.register_forward_pre_hook(self.ir_init))
            short = _short(name)
            if self.filter and not any(f in name or f in short for f in self.filter):
                continue

            def fwd(mod, inp, out, short=short):
                if self.recording and mod.training:
                    self.stats[short] = tile_stats(mod, inp[0], out)
                    self.stats[short + "#mod"] = mod
            self.handles.append(m.register_forward_hook(fwd))
        cls = layers[-1][1] if layers else None
        if cls is not None:
            def logits_hook(mod, inp, out):
                if self.recording and mod.training:
                    self.logits = out.detach()
            self.handles.append(cls.register_forward_hook(logits_hook))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._hook(pl_module)
        self.recording = pl_module.is_analog and trainer.global_step % self.every == 0
        self.stats = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.recording:
            return
        for key in [k for k in self.stats if not k.endswith("#mod")]:
            for row, g in zip(self.stats[key], grad_norms(self.stats[key + "#mod"])):
                row.update(g)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.recording:
            return
        self.recording = False
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        lstd = float(self.logits.std(0).mean()) if self.logits is not None else float("nan")
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        print(f"\n-- epoch {trainer.current_epoch} step {trainer.global_step} loss {loss:.4f} "
              f"logit_std {lstd:.4f} lr {lr:.4g}")
        print(f"{'layer':18s}" + "".join(f"{c:>{max(len(fmt.format(1)), len(c)) + 1}s}" for c, fmt in COLS))
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, "loss": loss, "logit_std": lstd,
                 "lr": lr, "layers": {}}
        for key in [k for k in self.stats if not k.endswith("#mod")]:
            entry["layers"][key] = self.stats[key]
            for i, row in enumerate(self.stats[key]):
                name = key if len(self.stats[key]) == 1 else f"{key}[{i}]"
                cells = []
                for c, fmt in COLS:
                    v = row.get(c, float("nan"))
                    width = max(len(fmt.format(1)), len(c)) + 1
                    cells.append(f"{'nan':>{width}s}" if isinstance(v, float) and math.isnan(v)
                                 else f"{fmt.format(v):>{width}s}")
                print(f"{name[:18]:18s}" + "".join(cells))
        self.records.append(entry)
        sys.stdout.flush()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        acc = trainer.callback_metrics.get("val/acc")
        if acc is not None:
            print(f"== epoch {trainer.current_epoch} val/acc {float(acc):.2f} "
                  f"({'analog' if pl_module.is_analog else 'digital'})")
            self.records.append({"epoch": trainer.current_epoch, "val_acc": float(acc)})
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20", help="preset name, YAML file (e.g. a search winner) or inline JSON")
    p.add_argument("--preset", default="pcm_hwa")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="AnalogConfig field override (out_noise=0, out_bits=0, input_range=false, ...)")
    p.add_argument("--rpu", action="append", default=[], metavar="DOTTED.PATH=VALUE",
                   help="rpu_overrides entry (forward.out_bound=40, pre_post.input_range.init_from_data=20, ...)")
    p.add_argument("--module", action="append", default=[], metavar="ARG=VALUE",
                   help="other AnalogNASModule argument (weight_decay=0, lr_schedule=constant, ...)")
    p.add_argument("--data", default="lightning_nas.data.DigitsDataModule", help="datamodule class path")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=0, help="digital_warmup_epochs")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=20, help="print the periphery table every N optimizer steps")
    p.add_argument("--layers", default="", help="comma-separated substrings of the layers to show (default all)")
    p.add_argument("--drift", action="store_true", help="end with the programming + drift evaluation (test set)")
    p.add_argument("--n-reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="")
    p.add_argument("--calibration", type=int, default=None, metavar="BATCHES",
                   help="AnalogNASModule.input_range_calibration where the module has it (0 = aihwkit's own "
                        "init from data, the behaviour before that option); default: the module's default")
    p.add_argument("--ir-init", default="", metavar="STAT[:BATCHES[:ALPHA]]",
                   help="candidate recipe: input ranges from alpha * STAT (std, rms, absmax) of the first BATCHES "
                        "training batches of each layer (default 20 batches, alpha = init_std_alpha); "
                        "turns aihwkit's init_from_data off")
    args = p.parse_args(argv)

    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)

    import importlib

    from lightning_nas.module import AnalogNASModule

    L.seed_everything(args.seed, verbose=False)
    mod_name, cls_name = args.data.rsplit(".", 1)
    dm = getattr(importlib.import_module(mod_name), cls_name)(batch_size=args.batch_size)
    rpu = _pairs(args.rpu)
    ir_init = None
    if args.ir_init:
        stat, *rest = args.ir_init.split(":")
        ir_init = InputRangeInit(stat, int(rest[0]) if rest else 20, float(rest[1]) if len(rest) > 1 else None)
        rpu["pre_post.input_range.init_from_data"] = 0
    analog = AnalogConfig(preset=args.preset, rpu_overrides=rpu, **_pairs(args.set))
    extra = _pairs(args.module)
    if args.calibration is not None:
        import inspect

        if "input_range_calibration" not in inspect.signature(AnalogNASModule.__init__).parameters:
            p.error("--calibration: this AnalogNASModule has no input_range_calibration argument")
        extra["input_range_calibration"] = args.calibration
    model = AnalogNASModule(architecture=_arch(args.arch), analog=analog, input_shape=dm.input_shape,
                            num_classes=dm.num_classes, lr=args.lr, digital_warmup_epochs=args.warmup, **extra)
    print(f"architecture {model.arch.describe()} ({model.arch.id}), {model.n_params:,} params; "
          f"analog {analog}; lr {args.lr}, warm-up {args.warmup}, epochs {args.epochs}, seed {args.seed}")
    log: list = []
    monitor = PeripheryMonitor(args.every, [f for f in args.layers.split(",") if f], log, ir_init)
    trainer = L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                        num_sanity_val_steps=0, accelerator="auto", devices=1)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    train_s = time.perf_counter() - t0
    result: dict[str, Any] = {"args": vars(args), "train_s": train_s, "log": log}
    dm.setup("test")
    from lightning_nas.drift import accuracy

    test_acc = accuracy(model.eval(), dm.test_dataloader(), model.device)
    result["test_acc"] = test_acc
    print(f"\ntrain {train_s:.1f} s; test acc (no programming noise / drift) {test_acc:.2f} %")
    if args.drift:
        from lightning_nas.drift import evaluate_drift

        res = evaluate_drift(model.net, dm.test_dataloader(), [1, 3600, 86400, 2592000], args.n_reps, seed=0)
        names = {1.0: "acc_1s", 3600.0: "acc_1h", 86400.0: "acc_1d", 2592000.0: "acc_30d"}
        drift = {names[t]: sum(v) / len(v) for t, v in res.items()}
        print("drift: " + "  ".join(f"{k} {v:.2f}" for k, v in drift.items()))
        result["drift"] = drift
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
