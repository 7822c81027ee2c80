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

The space is one table of dimensions (:data:`GLOBAL_DIMS`, :data:`DEPTH`, :data:`STAGE_DIMS`,
each a :class:`~lightning_nas.dimensions.Dimension`): validation, serialisation, features,
sampling, mutations and every search strategy (through :data:`SPACE`, a :class:`SearchSpace`)
read it. Everything here is pure Python (no torch): the layers of an architecture are described
once in :mod:`lightning_nas.blocks`, which the network builder, :func:`n_params` and the hardware
cost model read.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NoReturn, Optional, Sequence

from lightning_nas.blocks import (BlockPlan, LinearSpec, block_params, n_params, stage_plan, stage_widths,
                                  stem_layer)
from lightning_nas.dimensions import Dimension
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

# -- the table of dimensions: sampling, validation, features, mutations and strategies read it ----
GLOBAL_DIMS = (
    Dimension("out_channel0", OUT_CHANNEL0, default=16, scale=16, short=lambda v: f"c{v}"),
    Dimension("kernel0", KERNEL0, default=3, scale=2, short=lambda v: f"k{v}", step="other"),
)
"""Fields of the whole network (:class:`Architecture`'s fields before ``stages``, in order)."""
DEPTH = Dimension("M", tuple(range(1, MAX_STAGES + 1)), default=1, scale=1, short=str, allowed=f"1..{MAX_STAGES}")
"""The number of stages (``len(stages)``; mutations add or remove the last stage)."""
STAGE_DIMS = (
    Dimension("R", tuple(range(R_RANGE[0], R_RANGE[1] + 1)), default=1, scale=4, short=lambda v: f"{v}x",
              new_stage="first"),
    Dimension("B", tuple(range(B_RANGE[0], B_RANGE[1] + 1)), default=1, scale=1, short=str),
    Dimension("convblock", CONVBLOCKS, default="A", scale=1, short=str, feature="index", step="other"),
    Dimension("widenfact", WIDENFACTS, default=1.0, scale=0.5, short=lambda v: f"w{v:g}", new_stage="draw"),
    Dimension("skip", SKIPS, default=True, scale=1, short=lambda v: "s" if v else "n", step="other"),
)
"""Fields of one stage (:class:`Stage`'s fields, in order)."""
DESCRIBE_ORDER = ("R", "convblock", "B", "widenfact", "skip")
"""The stage fields in :meth:`Architecture.describe`, e.g. ``3xA1w2s`` (a new field goes last)."""
MUTATION_GROUPS = {"depth": ("M", "R", "convblock"), "width": ("B", "out_channel0", "widenfact"),
                   "other": ("skip", "kernel0")}
"""The fields each mutation group of :mod:`lightning_nas.search.mutations` changes, in the order its
random draws pick them (``M``: add or remove the last stage). Seeded searches depend on the order."""
DIMS = {d.name: d for d in (*GLOBAL_DIMS, DEPTH, *STAGE_DIMS)}


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (user input can be huge)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _fail(field_name: str, value: Any, allowed: str) -> NoReturn:
    raise ArchitectureError(f"architecture field '{field_name}' is {_short(value)}; allowed: {allowed}")


def _is_int(value: Any) -> bool:
    """An integer, and not a bool or a float that happens to be whole (16.0 is not a channel count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _names(keys: Any) -> str:
    """Keys of a user's mapping for a message: sorted whatever their types, each cut short."""
    return ", ".join(sorted(_short(k, 30) for k in keys))


STAGES_ALLOWED = f"a list of 1..{MAX_STAGES} stages (mappings of {', '.join(d.name for d in STAGE_DIMS)})"


@dataclass(frozen=True)
class Stage:
    """One main block: ``R`` residual blocks sharing type, branches, width and skip (the fields of
    :data:`STAGE_DIMS`, a test checks they agree)."""

    R: int = DIMS["R"].default
    B: int = DIMS["B"].default
    convblock: str = DIMS["convblock"].default
    widenfact: float = DIMS["widenfact"].default
    skip: bool = DIMS["skip"].default

    def __post_init__(self) -> None:
        for dim in STAGE_DIMS:  # e.g. widenfact 2 is 2.0 (the same widen factor and the same id)
            value = getattr(self, dim.name)
            coerced = dim.coerce(value)
            if coerced is not value:
                object.__setattr__(self, dim.name, coerced)
        self.validate(0)

    def validate(self, index: int) -> None:
        """Raise :class:`ArchitectureError` naming the field of stage ``index`` (1-based)."""
        for dim in STAGE_DIMS:
            value = getattr(self, dim.name)
            if not dim.valid(value):
                _fail(f"stages[{index}].{dim.name}", value, dim.allowed)


@dataclass(frozen=True)
class Architecture:
    """A frozen, hashable, serialisable point of the search space (the fields of
    :data:`GLOBAL_DIMS`, then ``stages``). Made with wrong types or values, directly or from a
    file, it raises one :class:`ArchitectureError` naming the field."""

    out_channel0: int = DIMS["out_channel0"].default
    kernel0: int = DIMS["kernel0"].default
    stages: tuple[Stage, ...] = field(default_factory=lambda: (Stage(),))

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Iterable):
            _fail("stages", stages, STAGES_ALLOWED)
        object.__setattr__(self, "stages", tuple(stages))
        self.validate()

    # -- validation -----------------------------------------------------------------
    def validate(self) -> None:
        for dim in GLOBAL_DIMS:
            value = getattr(self, dim.name)
            if not dim.valid(value):
                _fail(dim.name, value, dim.allowed)
        if not 1 <= len(self.stages) <= MAX_STAGES:
            _fail("M (number of stages)", len(self.stages), DEPTH.allowed)
        for i, stage in enumerate(self.stages, start=1):
            if not isinstance(stage, Stage):
                _fail(f"stages[{i}]", stage, "a Stage")  # a Stage validated itself when it was made

    @property
    def M(self) -> int:
        return len(self.stages)

    # -- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {**{d.name: getattr(self, d.name) for d in GLOBAL_DIMS}, DEPTH.name: self.M,
                "stages": [{d.name: getattr(s, d.name) for d in STAGE_DIMS} for s in self.stages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Architecture":
        """Build from the mapping written by :meth:`to_dict`.

        ``stages`` is required; ``M`` is optional but must match it. Missing global fields and
        missing stage fields take their defaults (the table: 16, 3; R 1, B 1, convblock A,
        widenfact 1.0, skip true). Types are strict: counts are integers (not floats or bools),
        ``widenfact`` a number, ``skip`` a bool.
        """
        if not isinstance(data, Mapping):
            raise ArchitectureError(f"an architecture must be a mapping, got {type(data).__name__}")
        known = {*(d.name for d in GLOBAL_DIMS), DEPTH.name, "stages"}
        unknown = _names(set(data) - known)
        if unknown:
            raise ArchitectureError(
                f"unknown architecture field(s) {unknown}; allowed: {', '.join(sorted(known))} "
                "(stage fields go under 'stages')")
        stages_data = data.get("stages")
        if not isinstance(stages_data, Sequence) or isinstance(stages_data, (str, bytes)):
            _fail("stages", stages_data, STAGES_ALLOWED)
        if not 1 <= len(stages_data) <= MAX_STAGES:
            _fail("M (number of stages)", len(stages_data), DEPTH.allowed)
        stages = []
        stage_fields = {d.name for d in STAGE_DIMS}
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
        return cls(**{d.name: data.get(d.name, d.default) for d in GLOBAL_DIMS}, stages=tuple(stages))

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
        """Short human-readable form, e.g. ``c16k3-3xA1w1s-3xA1w2s-3xA1w2s``."""
        parts = ["".join(d.short(getattr(self, d.name)) for d in GLOBAL_DIMS)]
        for s in self.stages:
            parts.append("".join(DIMS[name].short(getattr(s, name)) for name in DESCRIBE_ORDER))
        return "-".join(parts)

    # -- derived quantities ---------------------------------------------------------
    def feature_vector(self) -> list[float]:
        """Fixed-length numeric vector (see :func:`feature_names`); absent stages are zeros."""
        return SPACE.features(self)


@dataclass(frozen=True)
class Gene:
    """One position of the fixed-length genome: a global field, the depth, or a field of stage
    ``stage`` (0-based), named ``key`` (e.g. ``out_channel0``, ``M``, ``stage2_R``)."""

    key: str
    dim: Dimension
    stage: Optional[int]
    position: int


class SearchSpace:
    """The space as strategies see it (as optuna samplers see distributions): a fixed-length
    genome of :class:`Gene` (global fields, the depth ``M``, then every field of each of the
    ``max_stages`` stage slots), define-by-run construction, index encodings and features.
    Fields of stages an architecture does not have are absent (``None`` indices, zero features)."""

    def __init__(self, global_dims: Sequence[Dimension] = GLOBAL_DIMS, depth: Dimension = DEPTH,
                 stage_dims: Sequence[Dimension] = STAGE_DIMS, max_stages: int = MAX_STAGES) -> None:
        self.global_dims, self.depth, self.stage_dims = tuple(global_dims), depth, tuple(stage_dims)
        self.max_stages = max_stages
        keyed: list[tuple[str, Dimension, Optional[int]]] = [(d.name, d, None) for d in self.global_dims]
        keyed.append((depth.name, depth, None))
        keyed += [(f"stage{i}_{d.name}", d, i) for i in range(max_stages) for d in self.stage_dims]
        self.genome = tuple(Gene(key, d, stage, k) for k, (key, d, stage) in enumerate(keyed))
        self._depth_at = len(self.global_dims)

    def stage_genes(self, i: int) -> tuple[Gene, ...]:
        start = self._depth_at + 1 + i * len(self.stage_dims)
        return self.genome[start: start + len(self.stage_dims)]

    def build(self, choose: Callable[[Gene], Any]) -> Architecture:
        """Define-by-run: ``choose(gene)`` gives the value of each global field, then the depth,
        then each field of the stages the architecture has, in genome order."""
        values = {g.dim.name: choose(g) for g in self.genome[: self._depth_at]}
        m = choose(self.genome[self._depth_at])
        stages = tuple(Stage(**{g.dim.name: choose(g) for g in self.stage_genes(i)}) for i in range(m))
        return Architecture(**values, stages=stages)

    def decode(self, indices: Sequence[int]) -> Architecture:
        """The architecture of a full genome of choice indices (absent stages' entries ignored)."""
        return self.build(lambda g: g.dim.choices[indices[g.position]])

    def encode(self, arch: Architecture) -> list[Optional[int]]:
        """The choice index of every gene; ``None`` for the fields of absent stages."""
        out: list[Optional[int]] = [g.dim.index(getattr(arch, g.dim.name)) for g in self.genome[: self._depth_at]]
        out.append(self.depth.index(arch.M))
        for i in range(self.max_stages):
            if i < arch.M:
                out += [d.index(getattr(arch.stages[i], d.name)) for d in self.stage_dims]
            else:
                out += [None] * len(self.stage_dims)
        return out

    def features(self, arch: Architecture) -> list[float]:
        """The feature vector (:func:`feature_names`); absent stages are zeros."""
        vec = [d.encode(getattr(arch, d.name)) for d in self.global_dims] + [self.depth.encode(arch.M)]
        for i in range(self.max_stages):
            if i < arch.M:
                vec += [d.encode(getattr(arch.stages[i], d.name)) for d in self.stage_dims]
            else:
                vec += [0.0] * len(self.stage_dims)
        return vec

    def feature_names(self) -> list[str]:
        names = [d.name for d in self.global_dims] + [self.depth.name]
        for i in range(1, self.max_stages + 1):
            names += [f"{d.name}{i}" for d in self.stage_dims]
        return names

    def feature_scale(self) -> list[float]:
        """About one mutation step of each feature (the unit of distances between architectures)."""
        return [float(g.dim.scale) for g in self.genome]

    def size(self) -> int:
        """Exact number of distinct architectures."""
        per_stage = self.stage_choices()
        fixed = 1
        for d in self.global_dims:
            fixed *= len(d.choices)
        return fixed * sum(per_stage ** m for m in self.depth.choices)

    def stage_choices(self) -> int:
        out = 1
        for d in self.stage_dims:
            out *= len(d.choices)
        return out


SPACE = SearchSpace()
"""The AnalogNAS space: the one every command and strategy uses."""


def feature_names() -> list[str]:
    return SPACE.feature_names()


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


def check_task_shape(in_shape: Sequence[int], n_classes: int) -> None:
    """A task's input shape ``(C, H, W)`` (positive integers) and number of classes (>= 2)."""
    if len(in_shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in in_shape):
        raise UserError(f"input_shape must be three positive integers (C, H, W), got {list(in_shape)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {n_classes!r}")


# -- size and sampling -----------------------------------------------------------------
def stage_choices() -> int:
    return SPACE.stage_choices()


def space_size() -> int:
    """Exact number of distinct architectures in the space."""
    return SPACE.size()


N_SAMPLING_DIMS = len(SPACE.genome)
"""Sampling draws one number of [0, 1) per gene (fields of absent stages are drawn and unused)."""


def _arch_from_unit(u: Sequence[float]) -> Architecture:
    """Map a point of [0, 1)^N_SAMPLING_DIMS to an architecture (each gene picks one choice)."""
    return SPACE.build(lambda g: g.dim.pick(u[g.position]))


def _stagewise(rng: random.Random, max_params: int, in_shape: Sequence[int], n_classes: int,
               tries: int = 50) -> Optional[Architecture]:
    """One architecture drawn field by field like ``uniform``, but a stage that takes the partial
    network over ``max_params`` is redrawn (up to ``tries`` times) instead of the whole
    architecture. Widths never shrink, so a partial network's count (classifier included) is a
    lower bound of the final one: no accepted prefix is wasted."""
    def pick(dim: Dimension) -> Any:
        return dim.pick(rng.random())

    values = {d.name: pick(d) for d in GLOBAL_DIMS}
    m = pick(DEPTH)
    c, h, w = in_shape
    first = Architecture(**values)  # the stem of the network (its one default stage is not used)
    body = stem_layer(first, c).params
    width = first.out_channel0
    stages: list[Stage] = []
    for i in range(m):
        for _ in range(tries):
            stage = Stage(**{d.name: pick(d) for d in STAGE_DIMS})
            params, new_width, new_hw = _stage_params(stage, width, (h, w), i > 0)
            if body + params + LinearSpec(new_width, n_classes).params <= max_params:
                stages.append(stage)
                body, width, (h, w) = body + params, new_width, new_hw
                break
        else:
            break
    return Architecture(**values, stages=tuple(stages)) if stages else None


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
    def choices(d: Dimension) -> str:
        return f"{d.allowed} ({len(d.choices)} values)"

    lines = [f"AnalogNAS ResNet-like search space (version {SPACE_VERSION})"]
    lines += [f"  {d.name + ':':13} {choices(d)}" for d in GLOBAL_DIMS]
    lines.append(f"  {'M (stages):':13} {DEPTH.allowed}")
    lines += [f"  {'per stage:' if k == 0 else '':13} {d.name} {choices(d)}" for k, d in enumerate(STAGE_DIMS)]
    lines += [
        f"  choices per stage: {stage_choices()}",
        f"  distinct architectures: {space_size()} (~{space_size():.3e})",
        f"  presets: {', '.join(PRESETS)}",
    ]
    return "\n".join(lines)


__all__ = [
    "Architecture", "Stage", "PRESETS", "SPACE_VERSION", "load_architecture", "n_params", "sample",
    "space_size", "feature_names", "stage_plan", "stage_widths", "space_summary", "cifar_resnet",
    "BlockPlan", "SPACE", "SearchSpace", "Gene", "GLOBAL_DIMS", "DEPTH", "STAGE_DIMS", "DIMS",
]
