"""The AnalogNAS macro search space: the single source of truth for architectures.

An :class:`Architecture` is a ResNet-like network description:

* a stem convolution with ``out_channel0`` output channels and a ``kernel0`` kernel;
* ``M`` = ``len(stages)`` main blocks (stages), each a :class:`Stage` with
  ``R`` residual blocks of ``B`` parallel branches (summed, ResNeXt-like when
  ``B > 1``) of type ``convblock`` ("A": two 3x3 convs, "B": 1x1-3x3-1x1
  bottleneck), a channel multiplier ``widenfact`` over the previous width and a
  ``skip`` flag (residual connection on/off for all blocks of the stage);
* global average pooling and one linear classifier.

Stages beyond ``M`` do not exist in the record: they cannot be set, so they can
never be silently used. In the fixed-length feature vector they are zeros.

Everything here is pure Python (no torch): parameter counts are computed
analytically by :func:`n_params`, and :mod:`lightning_nas.network` builds the
torch module from the same :func:`stage_plan`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from lightning_nas.errors import ArchitectureError, UserError

SPACE_VERSION = "1"

OUT_CHANNEL0 = (8, 12, 16, 24, 32, 48, 64)
KERNEL0 = (3, 5, 7)
MAX_STAGES = 5
R_RANGE = (1, 16)
B_RANGE = (1, 4)
CONVBLOCKS = ("A", "B")
WIDEN_MIN, WIDEN_MAX, WIDEN_STEP = 1.0, 4.0, 0.5
WIDENFACTS = tuple(WIDEN_MIN + i * WIDEN_STEP for i in range(int((WIDEN_MAX - WIDEN_MIN) / WIDEN_STEP) + 1))
SKIPS = (False, True)
MAX_BUILD_PARAMS = 200_000_000
"""The largest network :class:`~lightning_nas.module.AnalogNASModule` builds (checked with
:func:`n_params` before anything is allocated): far beyond what an analog chip holds, well below
what exhausts a machine's memory in float32 with the training state."""
BOTTLENECK_REDUCTION = 4  # type-B blocks squeeze to width // 4 channels in the 3x3 conv


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (user input can be huge)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _fail(field_name: str, value: Any, allowed: str) -> None:
    raise ArchitectureError(f"architecture field '{field_name}' is {_short(value)}; allowed: {allowed}")


def _is_int(value: Any) -> bool:
    """An integer, and not a bool or a float that happens to be whole (16.0 is not a channel count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _names(keys: Any) -> str:
    """Keys of a user's mapping for a message: sorted whatever their types, each cut short."""
    return ", ".join(sorted(_short(k, 30) for k in keys))


@dataclass(frozen=True)
class Stage:
    """One main block: ``R`` residual blocks sharing type, branches, width and skip."""

    R: int = 1
    B: int = 1
    convblock: str = "A"
    widenfact: float = 1.0
    skip: bool = True

    def __post_init__(self) -> None:
        if _is_int(self.widenfact):  # 2 and 2.0 are the same widen factor (and the same id)
            object.__setattr__(self, "widenfact", float(self.widenfact))
        self.validate(0)

    def validate(self, index: int) -> None:
        """Raise :class:`ArchitectureError` naming the field of stage ``index`` (1-based)."""
        for name, (lo, hi) in (("R", R_RANGE), ("B", B_RANGE)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                _fail(f"stages[{index}].{name}", value, f"integers {lo}..{hi}")
        if not isinstance(self.convblock, str) or self.convblock not in CONVBLOCKS:
            _fail(f"stages[{index}].convblock", self.convblock, " or ".join(CONVBLOCKS))
        if not isinstance(self.widenfact, float) or self.widenfact not in WIDENFACTS:
            _fail(f"stages[{index}].widenfact", self.widenfact,
                  f"{WIDEN_MIN}..{WIDEN_MAX} in steps of {WIDEN_STEP}")
        if not isinstance(self.skip, bool):
            _fail(f"stages[{index}].skip", self.skip, "true or false")


@dataclass(frozen=True)
class Architecture:
    """A frozen, hashable, serialisable point of the search space."""

    out_channel0: int = 16
    kernel0: int = 3
    stages: tuple[Stage, ...] = field(default_factory=lambda: (Stage(),))

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        self.validate()

    # -- validation -----------------------------------------------------------------
    def validate(self) -> None:
        if not _is_int(self.out_channel0) or self.out_channel0 not in OUT_CHANNEL0:
            _fail("out_channel0", self.out_channel0, "integers " + ", ".join(map(str, OUT_CHANNEL0)))
        if not _is_int(self.kernel0) or self.kernel0 not in KERNEL0:
            _fail("kernel0", self.kernel0, "integers " + ", ".join(map(str, KERNEL0)))
        if not 1 <= len(self.stages) <= MAX_STAGES:
            _fail("M (number of stages)", len(self.stages), f"1..{MAX_STAGES}")
        for i, stage in enumerate(self.stages, start=1):
            if not isinstance(stage, Stage):
                _fail(f"stages[{i}]", stage, "a Stage")  # a Stage validated itself when it was made

    @property
    def M(self) -> int:
        return len(self.stages)

    # -- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "out_channel0": self.out_channel0,
            "kernel0": self.kernel0,
            "M": self.M,
            "stages": [{"R": s.R, "B": s.B, "convblock": s.convblock, "widenfact": s.widenfact, "skip": s.skip}
                       for s in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Architecture":
        """Build from the mapping written by :meth:`to_dict`.

        ``stages`` is required; ``M`` is optional but must match it. Missing ``out_channel0`` /
        ``kernel0`` and missing stage fields take the documented defaults (16, 3; R 1, B 1,
        convblock A, widenfact 1.0, skip true). Types are strict: counts are integers (not
        floats or bools), ``widenfact`` a number, ``skip`` a bool.
        """
        if not isinstance(data, Mapping):
            raise ArchitectureError(f"an architecture must be a mapping, got {type(data).__name__}")
        known = {"out_channel0", "kernel0", "M", "stages"}
        unknown = _names(set(data) - known)
        if unknown:
            raise ArchitectureError(
                f"unknown architecture field(s) {unknown}; allowed: {', '.join(sorted(known))} "
                "(stage fields go under 'stages')")
        stages_data = data.get("stages")
        if not isinstance(stages_data, Sequence) or isinstance(stages_data, (str, bytes)):
            raise ArchitectureError("architecture field 'stages' must be a list of 1..5 stage mappings")
        if not 1 <= len(stages_data) <= MAX_STAGES:
            _fail("M (number of stages)", len(stages_data), f"1..{MAX_STAGES}")
        stages = []
        stage_fields = set(Stage.__dataclass_fields__)
        for i, s in enumerate(stages_data, start=1):
            if not isinstance(s, Mapping):
                raise ArchitectureError(f"architecture field 'stages[{i}]' must be a mapping")
            bad = _names(set(s) - stage_fields)
            if bad:
                raise ArchitectureError(f"unknown field(s) {bad} in stages[{i}]; allowed: {', '.join(sorted(stage_fields))}")
            try:
                stages.append(Stage(**s))
            except ArchitectureError as err:  # name the stage: stages[0] -> stages[i]
                raise ArchitectureError(str(err).replace("stages[0]", f"stages[{i}]")) from None
        if "M" in data and (not _is_int(data["M"]) or data["M"] != len(stages)):
            raise ArchitectureError(
                f"architecture field 'M' is {_short(data['M'])} but {len(stages)} stage(s) are given; make them agree "
                "(an integer) or leave M out")
        return cls(out_channel0=data.get("out_channel0", 16), kernel0=data.get("kernel0", 3), stages=tuple(stages))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @cached_property
    def id(self) -> str:
        """Stable 12-hex-digit id: a hash of the canonical JSON form (computed once)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    def describe(self) -> str:
        """Short human-readable form, e.g. ``c16k3-3xA1w1.0s-3xA1w2.0s-3xA1w2.0s``."""
        parts = [f"c{self.out_channel0}k{self.kernel0}"]
        for s in self.stages:
            parts.append(f"{s.R}x{s.convblock}{s.B}w{s.widenfact:g}{'s' if s.skip else 'n'}")
        return "-".join(parts)

    # -- derived quantities ---------------------------------------------------------
    def feature_vector(self) -> list[float]:
        """Fixed-length numeric vector (see :func:`feature_names`); absent stages are zeros."""
        vec: list[float] = [float(self.out_channel0), float(self.kernel0), float(self.M)]
        for i in range(MAX_STAGES):
            if i < self.M:
                s = self.stages[i]
                vec += [float(s.R), float(s.B), float(CONVBLOCKS.index(s.convblock)), float(s.widenfact), float(s.skip)]
            else:
                vec += [0.0] * 5
        return vec


def feature_names() -> list[str]:
    names = ["out_channel0", "kernel0", "M"]
    for i in range(1, MAX_STAGES + 1):
        names += [f"R{i}", f"B{i}", f"convblock{i}", f"widenfact{i}", f"skip{i}"]
    return names


# -- presets ------------------------------------------------------------------------
def cifar_resnet(depth: int) -> Architecture:
    """He et al. CIFAR ResNet-``depth`` (6n+2 layers): stem 16, 3 stages, widen 1, 2, 2."""
    if (depth - 2) % 6:
        raise ArchitectureError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return Architecture(16, 3, tuple(Stage(R=n, B=1, convblock="A", widenfact=w, skip=True) for w in (1.0, 2.0, 2.0)))


PRESETS: dict[str, Architecture] = {
    "resnet20": cifar_resnet(20),
    "resnet32": cifar_resnet(32),
    "resnet44": cifar_resnet(44),
    "resnet56": cifar_resnet(56),
    # Wide ResNet-16-4 (Zagoruyko & Komodakis): widths 64, 128, 256, two blocks per stage.
    "wrn16_4": Architecture(16, 3, (Stage(2, 1, "A", 4.0), Stage(2, 1, "A", 2.0), Stage(2, 1, "A", 2.0))),
    # A small ResNeXt-like network: four summed bottleneck branches per block.
    "resnext_b4": Architecture(32, 3, (Stage(2, 4, "B", 2.0), Stage(2, 4, "B", 2.0), Stage(2, 4, "B", 2.0))),
}


def read_yaml_file(path: Path, what: str) -> Any:
    """The one YAML document in ``path`` (plain data only); every way the file can be unreadable
    is a :class:`UserError` that names the file and the problem."""
    import yaml

    shown = str(path) if len(str(path)) <= 200 else str(path)[:197] + "..."
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {shown} does not exist; give a preset name ({', '.join(PRESETS)}) "
                        "or an existing YAML file") from None
    except OSError as err:
        raise UserError(f"{what} {shown} can't be read ({err.strerror or err}); check the path") from None
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {shown} is not UTF-8 text; save it as UTF-8 YAML") from None
    try:
        return yaml.safe_load(decoded)
    except yaml.YAMLError as err:
        first = getattr(err, "problem", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UserError(f"{what} {shown} is not valid YAML{where}: {first}; it must hold one plain "
                        "mapping (no tags, one document)") from None


def load_architecture(spec: "str | Mapping[str, Any] | Architecture") -> Architecture:
    """Resolve a preset name, an inline mapping, or a path to a YAML/JSON architecture file.

    A file may hold the architecture itself or a mapping with an ``architecture``
    key (as written by ``search``).
    """
    if isinstance(spec, Architecture):
        return spec
    if isinstance(spec, Mapping):
        return Architecture.from_dict(spec)
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        path = Path(spec)
        if path.suffix.lower() in {".yaml", ".yml", ".json"}:
            data = read_yaml_file(path, "architecture file")
            if isinstance(data, Mapping) and "architecture" in data:
                data = data["architecture"]
            return Architecture.from_dict(data)
    raise UserError(f"unknown architecture {spec!r}; use a preset ({', '.join(PRESETS)}), "
                    "an inline mapping, or a path to a .yaml architecture file")


# -- structure and parameter count (shared with the network builder) -----------------
@dataclass(frozen=True)
class BlockPlan:
    in_channels: int
    width: int
    stride: int
    branches: int
    convblock: str
    skip: bool

    @property
    def projection(self) -> bool:
        """A 1x1 conv + BN shortcut is needed when the residual changes shape."""
        return self.skip and (self.in_channels != self.width or self.stride != 1)

    @property
    def bottleneck_width(self) -> int:
        return max(1, self.width // BOTTLENECK_REDUCTION)


def stage_widths(arch: Architecture) -> list[int]:
    widths, prev = [], arch.out_channel0
    for s in arch.stages:
        prev = int(round(prev * s.widenfact))
        widths.append(prev)
    return widths


def stage_plan(arch: Architecture, input_hw: tuple[int, int]) -> list[list[BlockPlan]]:
    """Blocks of every stage. Every stage after the first halves the feature map at
    its first block (stride 2) while the map is larger than 1x1."""
    h, w = input_hw
    plan, in_ch = [], arch.out_channel0
    for i, (stage, width) in enumerate(zip(arch.stages, stage_widths(arch))):
        blocks = []
        for r in range(stage.R):
            stride = 2 if (i > 0 and r == 0 and (h > 1 or w > 1)) else 1
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
            blocks.append(BlockPlan(in_ch, width, stride, stage.B, stage.convblock, stage.skip))
            in_ch = width
        plan.append(blocks)
    return plan


def _conv_bn(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout  # conv without bias + BN affine


def block_params(b: BlockPlan) -> int:
    if b.convblock == "A":
        branch = _conv_bn(b.in_channels, b.width, 3) + _conv_bn(b.width, b.width, 3)
    else:
        m = b.bottleneck_width
        branch = _conv_bn(b.in_channels, m, 1) + _conv_bn(m, m, 3) + _conv_bn(m, b.width, 1)
    return b.branches * branch + (_conv_bn(b.in_channels, b.width, 1) if b.projection else 0)


def check_task_shape(in_shape: Sequence[int], n_classes: int) -> None:
    """A task's input shape ``(C, H, W)`` (positive integers) and number of classes (>= 2)."""
    if len(in_shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in in_shape):
        raise UserError(f"input_shape must be three positive integers (C, H, W), got {list(in_shape)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {n_classes!r}")


def n_params(arch: Architecture, in_shape: Sequence[int], n_classes: int) -> int:
    """Trainable parameters of the built network, computed without building it.

    ``in_shape`` is ``(C, H, W)``.
    """
    c, h, w = in_shape
    total = _conv_bn(c, arch.out_channel0, arch.kernel0)
    for blocks in stage_plan(arch, (h, w)):
        total += sum(block_params(b) for b in blocks)
    total += stage_widths(arch)[-1] * n_classes + n_classes
    return total


# -- size and sampling -----------------------------------------------------------------
def stage_choices() -> int:
    return (R_RANGE[1] - R_RANGE[0] + 1) * (B_RANGE[1] - B_RANGE[0] + 1) * len(CONVBLOCKS) * len(WIDENFACTS) * len(SKIPS)


def space_size() -> int:
    """Exact number of distinct architectures in the space."""
    per_stage = stage_choices()
    return len(OUT_CHANNEL0) * len(KERNEL0) * sum(per_stage ** m for m in range(1, MAX_STAGES + 1))


# Categorical dimensions in sampling order: three global ones, then five per stage slot.
_GLOBAL_DIMS = (OUT_CHANNEL0, KERNEL0, tuple(range(1, MAX_STAGES + 1)))
_STAGE_DIMS = (tuple(range(R_RANGE[0], R_RANGE[1] + 1)), tuple(range(B_RANGE[0], B_RANGE[1] + 1)),
               CONVBLOCKS, WIDENFACTS, SKIPS)
N_SAMPLING_DIMS = len(_GLOBAL_DIMS) + MAX_STAGES * len(_STAGE_DIMS)


def _arch_from_unit(u: Sequence[float]) -> Architecture:
    """Map a point of [0, 1)^N_SAMPLING_DIMS to an architecture (each dim picks one choice)."""
    def pick(choices: Sequence[Any], x: float) -> Any:
        return choices[min(int(x * len(choices)), len(choices) - 1)]

    c0, k0, m = (pick(d, x) for d, x in zip(_GLOBAL_DIMS, u[:3]))
    stages = []
    for i in range(m):
        xs = u[3 + 5 * i: 8 + 5 * i]
        r, b, cb, wf, sk = (pick(d, x) for d, x in zip(_STAGE_DIMS, xs))
        stages.append(Stage(R=r, B=b, convblock=cb, widenfact=wf, skip=sk))
    return Architecture(c0, k0, tuple(stages))


def _stagewise(rng: random.Random, max_params: int, in_shape: Sequence[int], n_classes: int,
               tries: int = 50) -> Optional[Architecture]:
    """One architecture drawn field by field like ``uniform``, but a stage that takes the partial
    network over ``max_params`` is redrawn (up to ``tries`` times) instead of the whole
    architecture. Widths never shrink, so a partial network's count (classifier included) is a
    lower bound of the final one: no accepted prefix is wasted."""
    def pick(choices: Sequence[Any]) -> Any:
        return choices[min(int(rng.random() * len(choices)), len(choices) - 1)]

    c0, k0, m = (pick(d) for d in _GLOBAL_DIMS)
    c, h, w = in_shape
    body = _conv_bn(c, c0, k0)
    width = c0
    stages: list[Stage] = []
    for i in range(m):
        for _ in range(tries):
            stage = Stage(*(pick(d) for d in _STAGE_DIMS))
            params, new_width, new_hw = _stage_params(stage, width, (h, w), i > 0)
            if body + params + new_width * n_classes + n_classes <= max_params:
                stages.append(stage)
                body, width, (h, w) = body + params, new_width, new_hw
                break
        else:
            break
    return Architecture(c0, k0, tuple(stages)) if stages else None


def _stage_params(stage: Stage, in_ch: int, hw: tuple[int, int], strided: bool) -> tuple[int, int, tuple[int, int]]:
    """Parameters, output width and output map of one stage (as :func:`stage_plan` builds it)."""
    h, w = hw
    width = int(round(in_ch * stage.widenfact))
    stride = 2 if (strided and (h > 1 or w > 1)) else 1
    if stride == 2:
        h, w = (h + 1) // 2, (w + 1) // 2
    first = block_params(BlockPlan(in_ch, width, stride, stage.B, stage.convblock, stage.skip))
    rest = block_params(BlockPlan(width, width, 1, stage.B, stage.convblock, stage.skip)) if stage.R > 1 else 0
    return first + (stage.R - 1) * rest, width, (h, w)  # blocks after the first are identical


def _latin_hypercube(n: int, dims: int, rng: random.Random) -> list[list[float]]:
    columns = []
    for _ in range(dims):
        strata = [(k + rng.random()) / n for k in range(n)]
        rng.shuffle(strata)
        columns.append(strata)
    return [[columns[d][i] for d in range(dims)] for i in range(n)]


def sample(n: int, *, seed: int = 0, method: str = "uniform", max_params: int | None = None,
           in_shape: Sequence[int] = (3, 32, 32), n_classes: int = 10,
           exclude: Iterator[str] | set[str] | None = None, max_tries: int = 1000) -> list[Architecture]:
    """Draw ``n`` distinct architectures with a seed (the list of :func:`iter_sample`)."""
    return list(iter_sample(n, seed=seed, method=method, max_params=max_params, in_shape=in_shape,
                            n_classes=n_classes, exclude=exclude, max_tries=max_tries))


MAX_LHS_SAMPLES = 1_000_000
"""A Latin hypercube is drawn whole (n points at once); above this, use ``uniform`` (streamed)."""


def iter_sample(n: int, *, seed: int = 0, method: str = "uniform", max_params: int | None = None,
                in_shape: Sequence[int] = (3, 32, 32), n_classes: int = 10,
                exclude: Iterator[str] | set[str] | None = None, max_tries: int = 1000) -> Iterator[Architecture]:
    """Yield ``n`` distinct architectures drawn with a seed, one at a time.

    ``method="uniform"``: every field uniform over its choices (``M`` uniform in
    1..5, then each stage's fields), drawn lazily (memory: the ids seen so far). ``method="lhs"``:
    Latin-hypercube over the same categorical dimensions, in batches of ``n`` (at most
    :data:`MAX_LHS_SAMPLES`); under ``max_params`` the points over budget (for the given
    ``in_shape``/``n_classes``) are dropped and a fresh batch is drawn until ``n`` are found.
    ``method="stagewise"`` (with ``max_params``): as ``uniform``, but a stage that takes the network
    over the budget is redrawn instead of the whole architecture (:func:`_stagewise`): far fewer
    draws under a tight budget, at the price of a bias towards the budget's cheaper stages.
    ``exclude`` holds architecture ids to skip. Raises :class:`UserError` if ``max_tries``
    batches can't find ``n`` architectures.
    """
    if method not in ("uniform", "lhs", "stagewise"):
        raise UserError(f"unknown sampling method {method!r}; use 'uniform', 'lhs' or 'stagewise'")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"number of architectures must be an integer >= 0, got {n!r}")
    if method == "lhs" and n > MAX_LHS_SAMPLES:
        raise UserError(f"{n:,} Latin-hypercube samples are drawn at once; use at most {MAX_LHS_SAMPLES:,} or "
                        "method 'uniform' (streamed)")
    if n == 0:
        return
    rng = random.Random(seed)
    seen = set(exclude or ())
    found = 0
    for _ in range(max_tries):
        batch = max(n - found, 1)
        candidates: Iterable[Optional[Architecture]]
        if method == "stagewise" and max_params is not None:  # under the budget by construction
            candidates = (_stagewise(rng, max_params, in_shape, n_classes) for _ in range(batch * 20))
        elif method == "lhs":
            candidates = (_arch_from_unit(u) for u in _latin_hypercube(batch, N_SAMPLING_DIMS, rng))
        else:  # lazily: the same draws as a whole batch, without holding it
            candidates = (_arch_from_unit([rng.random() for _ in range(N_SAMPLING_DIMS)]) for _ in range(batch))
        for arch in candidates:
            if arch is None or arch.id in seen:
                continue
            if max_params is not None and method != "stagewise" and n_params(arch, in_shape, n_classes) > max_params:
                continue
            seen.add(arch.id)
            found += 1
            yield arch
            if found == n:
                return
        if found == n:
            return
    raise UserError(f"found only {found} of {n} architectures under max_params={max_params} after "
                    f"{max_tries} batches; raise max_params or ask for fewer architectures")


def space_summary() -> str:
    lines = [
        f"AnalogNAS ResNet-like search space (version {SPACE_VERSION})",
        f"  out_channel0: {list(OUT_CHANNEL0)}",
        f"  kernel0:      {list(KERNEL0)}",
        f"  M (stages):   1..{MAX_STAGES}",
        f"  per stage:    R {R_RANGE[0]}..{R_RANGE[1]}, B {B_RANGE[0]}..{B_RANGE[1]}, convblock {list(CONVBLOCKS)},",
        f"                widenfact {WIDEN_MIN}..{WIDEN_MAX} step {WIDEN_STEP} ({len(WIDENFACTS)} values), skip on/off",
        f"  choices per stage: {stage_choices()}",
        f"  distinct architectures: {space_size()} (~{space_size():.3e})",
        f"  presets: {', '.join(PRESETS)}",
    ]
    return "\n".join(lines)


__all__ = [
    "Architecture", "Stage", "PRESETS", "SPACE_VERSION", "load_architecture", "n_params", "sample",
    "space_size", "feature_names", "stage_plan", "stage_widths", "space_summary", "cifar_resnet",
    "BlockPlan",
]
