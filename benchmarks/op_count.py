"""Kernel launches and host syncs per training step and per evaluation, digital vs the fast path.

On a GPU the fast path is launch-bound: what a step costs there is the number of kernels it
launches and the host syncs that stall the launch queue, not the arithmetic. Both are counted
here on the CPU, where they are device-independent:

* **eager modes** (``digital``, ``fast-eager``: the fast path with the eager PyTorch periphery,
  what runs on CUDA without compilation): every ATen operation that computes (views,
  allocations and metadata operations are free) is at least one kernel launch on CUDA;
* ``fast-native`` (the CPU default): the native C periphery's calls count as one operation each;
* **compiled modes** (``digital-compiled``, ``fast-compiled``: the whole network through
  ``torch.compile(fullgraph=True)``, :mod:`lightning_nas.compilation`): the kernels Inductor
  generated that the step calls, plus every ATen operation still dispatched (convolutions and
  matrix products run as library calls, fallbacks, and everything outside the graph: loss,
  optimizer, clipping).

**Host syncs**: reads of a tensor's value on the host (``_local_scalar_dense``: ``.item()``,
``int()``, ``bool()``, ``if tensor``) and copies between devices. Copies are only visible when
the model runs on another device than the CPU: ``--device meta`` runs the eager modes on
PyTorch's meta device (shapes only, no data), where a CPU tensor meeting the model's tensors
is a host-to-device copy as it would be on CUDA.

    .venv/bin/python benchmarks/op_count.py --archs resnet32 sampled:2 --batch-size 128
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import re
from collections import Counter
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_nas import periphery
from lightning_nas.analog import AnalogConfig
from lightning_nas.analog_sgd import FastAnalogSGD
from lightning_nas.conversion import convert
from lightning_nas.fast_analog import mark_ranges_initialised, ranges_initialised
from lightning_nas.network import build_network
from lightning_nas.space import load_architecture, sample

FREE = {"detach", "alias", "empty", "empty_strided", "empty_like", "lift_fresh", "set_", "resize_", "_unsafe_view",
        "zeros_like_meta", "record_stream", "_foreach_zero_"}
"""ATen operations that launch no kernel (besides views: ``OpOverload.is_view``)."""

SYNCS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "unique",
         "_unique2", "allclose"}
"""Operations whose result the host waits for."""


class OpCounter(TorchDispatchMode):
    """Counts the computing ATen operations and the host syncs of everything run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()
        self.syncs: Counter = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in SYNCS:
            self.syncs[name] += 1
        elif _crosses_devices(args, kwargs):
            self.syncs[f"{name} (copy between devices)"] += 1
        if not (func.is_view or name in FREE or name in SYNCS):
            self.ops[name] += 1
        if name == "_local_scalar_dense" and args[0].device.type == "meta":
            # No values on meta: a read gives True or 2**30 (a counter past any threshold, a positive statistic).
            dtype = args[0].dtype
            return True if dtype == torch.bool else float(2 ** 30) if dtype.is_floating_point else 2 ** 30
        return func(*args, **kwargs)

    @property
    def n_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def n_syncs(self) -> int:
        return sum(self.syncs.values())


def _crosses_devices(args: tuple, kwargs: dict) -> bool:
    """A CPU tensor (not a 0-d scalar, which travels as a kernel argument) meets a tensor on another
    device, or a copy is asked to another device than its source's."""
    devices = set()
    for a in [*args, *kwargs.values()]:
        for t in (a if isinstance(a, (list, tuple)) else [a]):
            if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0):
                devices.add(t.device.type)
    target = kwargs.get("device")
    if target is not None and devices:
        devices.add(torch.device(target).type)
    return len(devices) > 1


@contextlib.contextmanager
def counting_native_calls(counter: OpCounter) -> Iterator[None]:
    """The native periphery's C calls counted as one operation each (they dispatch no ATen op)."""
    impl = periphery.BACKEND_IMPLS["native"]
    saved = {}
    for name in ("dac", "dac_backward", "adc", "adc_backward", "weighted_moments"):
        original = getattr(impl, name)
        saved[name] = original

        def wrapped(*a: Any, _name: str = name, _original: Callable = original, **k: Any) -> Any:
            counter.ops[f"native {_name}"] += 1
            return _original(*a, **k)

        setattr(impl, name, wrapped)
    try:
        yield
    finally:
        for name in saved:
            delattr(impl, name)  # back to the class's method


_CALL = re.compile(r"^\s*(?:\w+(?:\s*,\s*\w+)*\s*=\s*)?([\w.]+)\(", re.M)
_NOT_LAUNCHES = re.compile(r"^(empty_strided\w*|reinterpret_tensor|as_strided|alloc_from_pool|assert_\w+|"
                           r"torch\._C\._dynamo\.guards\.\w+|del|len|tuple|list|print|\w+\.clear|"
                           r"(?:torch\.ops\.)?aten\.(?:view|_unsafe_view|reshape|expand|permute|t|as_strided|"
                           r"squeeze|unsqueeze|detach|alias|empty\w*)\.\w+)$")


def code_launches(sources: list[str]) -> Counter:
    """Launches in Inductor's generated ``call`` functions, one per call site: its generated kernels
    (``kernels``) and the library calls and fallbacks it makes (``extern/fallback``); allocations and
    views are free."""
    counts: Counter = Counter()
    for src in sources:
        body = src[src.find("def call("):]
        body = body[: body.find("\ndef ", 1)] if "\ndef " in body[1:] else body
        for name in _CALL.findall(body.split("\n", 1)[1] if "\n" in body else ""):
            if _NOT_LAUNCHES.match(name):
                continue
            kind = "kernels" if re.match(r"(cpp_fused|triton_|kernel)", name) else "extern/fallback"
            counts[kind] += 1
    return Counter({k: v for k, v in counts.items() if v})


# -- the modes ---------------------------------------------------------------------------------

def analog(net: nn.Module) -> nn.Module:
    return convert(copy.deepcopy(net), AnalogConfig(preset="pcm_hwa", implementation="fast"))


def optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """SGD as the module runs it; ``foreach`` as CUDA runs it (one launch per list of tensors)."""
    cls = FastAnalogSGD if any(True for _ in _tiles(model)) else torch.optim.SGD
    return cls(model.parameters(), lr=0.01, momentum=0.9, foreach=True)


def _tiles(model: nn.Module) -> Iterator[Any]:
    seen: set[int] = set()
    for m in model.modules():
        for tile in (m.analog_tiles() if hasattr(m, "analog_tiles") else ()):
            if id(tile) not in seen:
                seen.add(id(tile))
                yield tile


MODES: dict[str, dict[str, Any]] = {
    "digital": {"analog": False, "periphery": None, "compiled": False},
    "fast-eager": {"analog": True, "periphery": "eager", "compiled": False},
    "fast-native": {"analog": True, "periphery": "native", "compiled": False},
    "digital-compiled": {"analog": False, "periphery": None, "compiled": True},
    "fast-compiled": {"analog": True, "periphery": "eager", "compiled": True},
}


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model.to(device)``; aihwkit's tiles move only to CUDA or the CPU by themselves, so on other
    devices (meta) their remaining tensors are moved here, as ``.cuda()`` moves them."""
    from aihwkit.optim.context import AnalogContext

    model = model.to(device)
    if device.type not in ("cpu", "cuda"):
        for tile in _tiles(model):
            for name, p in list(tile._parameters.items()):
                if p is not None and not isinstance(p, AnalogContext) and p.device != device:
                    tile._parameters[name] = nn.Parameter(p.detach().to(device), requires_grad=p.requires_grad)
            for name, b in list(tile._buffers.items()):
                if b is not None and b.device != device:
                    tile._buffers[name] = b.to(device)
    return model


def count_mode(mode: str, net: nn.Module, batch: int, device: torch.device, warmup: int = 2) -> dict[str, Any]:
    """Ops and syncs of one steady-state training step and one evaluation of ``net`` in ``mode``."""
    spec = MODES[mode]
    # On meta every value read on the host comes from a counter (there are none): the set-up too.
    with OpCounter() if device.type == "meta" else contextlib.nullcontext():
        return _count_mode(spec, net, batch, device, warmup)


def _count_mode(spec: dict[str, Any], net: nn.Module, batch: int, device: torch.device, warmup: int) -> dict[str, Any]:
    from lightning_nas.compilation import compile_network

    torch.manual_seed(0)
    shape = net.input_shape
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, net.num_classes, (batch,), device=device)
    with periphery.using(spec["periphery"]):
        model = to_device(analog(net) if spec["analog"] else copy.deepcopy(net), device)
        opt = optimizer(model)
        loss_fn = nn.CrossEntropyLoss()
        run = model
        sources: list[str] = []
        if spec["analog"]:
            model.train()
            model(x)  # the first batch initialises the input ranges from data
            mark_ranges_initialised(model)
            assert ranges_initialised(model)
        if spec["compiled"]:
            run = compile_network(model, mode="default")

        compiled = spec["compiled"]

        def step(counter: Optional[OpCounter] = None) -> None:
            """One training step; a compiled network's forward and backward run outside ``counter``
            (a dispatch mode can't run inside a compiled region: they are counted from its code)."""
            model.train()
            inside = counter if counter is not None and not compiled else contextlib.nullcontext()
            outside = counter if counter is not None else contextlib.nullcontext()
            with outside:
                opt.zero_grad(set_to_none=True)
            with inside:
                out = run(x)
            logits = out.detach().requires_grad_()
            with outside:
                loss_fn(logits, y).backward()
            with inside:
                out.backward(logits.grad)
            with outside:
                opt.step()

        def evaluate(counter: Optional[OpCounter] = None) -> None:
            model.eval()
            with torch.no_grad(), (counter if counter is not None and not compiled else contextlib.nullcontext()):
                run(x)

        result: dict[str, Any] = {}
        for name, fn in (("train", step), ("eval", evaluate)):
            if compiled:
                from torch._inductor.utils import run_and_get_code

                _, sources = run_and_get_code(fn)  # compiles (the forward and backward graphs)
            for _ in range(warmup):
                fn()
            counter = OpCounter()
            with counting_native_calls(counter) if spec["periphery"] == "native" else contextlib.nullcontext():
                fn(counter)
            code = code_launches(sources) if compiled else Counter()
            result[name] = {"launches": counter.n_ops + sum(code.values()), "aten_ops": counter.n_ops,
                            "compiled_code": dict(code), "syncs": counter.n_syncs, "sync_ops": dict(counter.syncs),
                            "top_ops": dict(counter.ops.most_common(8))}
    return result


def architectures(names: list[str], input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """``resnet32`` and other preset names or files; ``sampled:K``: the first K sampled architectures
    of seed 0 (max 1 M parameters)."""
    archs = {}
    for name in names:
        if name.startswith("sampled:"):
            for arch in sample(int(name.split(":")[1]), seed=0, max_params=1_000_000, in_shape=input_shape,
                               n_classes=num_classes):
                archs[f"sampled {arch.id}"] = arch
        else:
            archs[name] = load_architecture(name)
    return archs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["resnet32", "sampled:2"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--input-shape", type=int, nargs=3, default=[3, 32, 32])
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=["cpu", "meta", "cuda"],
                   help="meta or cuda: shows copies between devices (see the docstring); meta: eager modes only")
    p.add_argument("--json", help="write the counts here")
    args = p.parse_args()
    device = torch.device(args.device)
    shape = tuple(args.input_shape)
    rows = []
    print(f"torch={torch.__version__}  device={device}  batch={args.batch_size}  input_shape={list(shape)}")
    print(f"{'architecture':<22} {'mode':<17} {'train':>7} {'x dig':>6} {'syncs':>5} {'eval':>6} {'x dig':>6} {'syncs':>5}")
    for arch_name, arch in architectures(args.archs, shape, args.num_classes).items():
        net = build_network(arch, shape, args.num_classes)
        net.input_shape, net.num_classes = shape, args.num_classes
        digital: dict[str, dict[str, Any]] = {}
        for mode in args.modes:
            if device.type == "meta" and (MODES[mode]["compiled"] or MODES[mode]["periphery"] == "native"):
                continue
            counts = count_mode(mode, net, args.batch_size, device)
            base = "digital-compiled" if MODES[mode]["compiled"] else "digital"
            if not MODES[mode]["analog"]:
                digital[mode] = counts
            ref = digital.get(base) or digital.get("digital")
            ratio = {k: counts[k]["launches"] / ref[k]["launches"] if ref else float("nan") for k in ("train", "eval")}
            rows.append({"architecture": arch_name, "mode": mode, **counts, "x_digital": ratio,
                         "digital_reference": base if digital.get(base) else "digital"})
            print(f"{arch_name:<22} {mode:<17} {counts['train']['launches']:>7} {ratio['train']:>6.2f} "
                  f"{counts['train']['syncs']:>5} {counts['eval']['launches']:>6} {ratio['eval']:>6.2f} "
                  f"{counts['eval']['syncs']:>5}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": str(device), "batch_size": args.batch_size,
                       "input_shape": list(shape), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
