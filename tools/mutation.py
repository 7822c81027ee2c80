"""``make mutation``: mutation testing of the analog physics with mutmut (docs/findings/mutation.md).

Mutated: the drift evaluation (``drift.py``), its metrics (``metrics.py``), the drift callback
(``callbacks/drift_evaluation.py``), the fast path (``fast_analog.py``) and the periphery backends'
Python (``periphery/*.py``; the native C kernel itself is not mutated). The run works on a copy in
``build/mutation/`` (never on the working tree, where other work goes on): the source is copied
with ``callbacks/`` placed at ``lightning_nas/callbacks/`` (where it is installed), so the tests import
the mutated copy of every mutated module. mutmut 3 leaves functions with decorators other than one
``@staticmethod``/``@classmethod`` alone; the module-level ``@torch.no_grad()`` functions are
therefore rewritten in the copy to ``f = torch.no_grad()(f)`` after the module (same behaviour),
so they are mutated too.

Usage: ``python tools/mutation.py [--max-children N] [MUTANT_GLOB ...]`` (globs as mutmut's, e.g.
``'lightning_nas.drift*'``); then ``cd build/mutation && mutmut show NAME`` for one mutant's diff.
Environment: ``MUTATION_DIR`` (default ``build/mutation``). Threads are pinned to one per process
(OMP_NUM_THREADS=1): mutmut forks its test processes, and a forked OpenMP pool would hang.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# periphery/compiled.py is left out: each of its mutants would torch.compile again (a minute of CPU
# per mutant here); its operations are the eager ones, which are mutated.
MUTATE = ["lightning_nas/drift.py", "lightning_nas/metrics.py", "lightning_nas/callbacks/drift_evaluation.py",
          "lightning_nas/fast_analog.py", "lightning_nas/periphery/__init__.py", "lightning_nas/periphery/eager.py",
          "lightning_nas/periphery/native.py"]
# The fast selection (about two minutes clean on the busy 2-core sandbox; each mutant runs only the
# tests that reach the mutated function), without the slow tests and the torch.compile ones.
TESTS = ["tests/test_physics.py", "tests/test_drift.py", "tests/test_fast_analog.py", "tests/test_periphery.py"]
# Statements not mutated: what an error or warning says (the conditions that raise them are mutated)
# and what is printed.
SKIP = [r"raise \w+(Error|Exception)\(", r"warnings\.warn\(", r"rank_zero_info\("]
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-m", "not slow", "-k", "not compiled_backend"]

CONFIG = """[mutmut]
source_paths = lightning_nas
only_mutate =
{only}
pytest_add_cli_args =
{pytest_args}
pytest_add_cli_args_test_selection =
{tests}
do_not_mutate_patterns =
{skip}
timeout_multiplier = 5.0
timeout_constant = 30.0
"""

_NO_GRAD = re.compile(r"^@torch\.no_grad\(\)\ndef (\w+)\(", re.M)


# Appended to the copy's tests/conftest.py. mutmut forks each mutant's test process from the one
# that ran the clean tests, so module-level caches arrive filled and a mutant of the function that
# fills them would never run: empty them before every test.
COLD_CACHES = """

@pytest.fixture(autouse=True)
def _mutation_cold_caches():
    from lightning_nas import fast_analog, periphery
    from lightning_nas.periphery import eager

    fast_analog._MAPS.clear()
    eager._scalars.clear()
    periphery._warned.clear()
"""


def undecorate(source: str) -> str:
    """``@torch.no_grad()`` on a module-level function -> the same wrapping after the module."""
    names = _NO_GRAD.findall(source)
    if not names:
        return source
    source = _NO_GRAD.sub(lambda m: f"def {m.group(1)}(", source)
    return source + "\n\n# tools/mutation.py: the decorators, applied after the module\n" + "".join(
        f"{name} = torch.no_grad()({name})\n" for name in names)


def prepare(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lightning_nas", "tests"):
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copytree(ROOT / "callbacks", dest / "lightning_nas" / "callbacks", ignore=ignore)
    with open(dest / "tests" / "conftest.py", "a") as f:
        f.write(COLD_CACHES)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")  # pytest's settings (markers); no [tool.mutmut]
    for path in dest.glob("lightning_nas/**/*.py"):
        text = path.read_text()
        if (new := undecorate(text)) != text:
            path.write_text(new)
    (dest / "setup.cfg").write_text(CONFIG.format(only="\n".join(f"    {p}" for p in MUTATE),
                                                  tests="\n".join(f"    {t}" for t in TESTS),
                                                  skip="\n".join(f"    {p}" for p in SKIP),
                                                  pytest_args="\n".join(f"    {a}" for a in PYTEST_ARGS)))


def summary(dest: Path) -> dict:
    """Counts by mutmut's status and the mutants not killed, from mutmut's own result files. The kill
    rate counts a timeout as killed (the mutant made the tests hang) over the mutants run."""
    from mutmut.stats import status_by_exit_code

    status: Counter = Counter()
    not_killed = []
    for meta in sorted((dest / "mutants").rglob("*.meta")):
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            state = status_by_exit_code[code]
            status[state] += 1
            if state in ("survived", "no tests", "suspicious"):
                not_killed.append(f"{name}: {state}")
    caught = status["killed"] + status["timeout"] + status["segfault"]
    tested = caught + status["survived"] + status["no tests"] + status["suspicious"]
    return {"counts": dict(status), "kill_rate": round(caught / tested, 4) if tested else None,
            "not_killed": not_killed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("mutants", nargs="*", help="mutant names or globs (default: all)")
    args = parser.parse_args()
    dest = Path(os.environ.get("MUTATION_DIR", ROOT / "build" / "mutation")).resolve()
    prepare(dest)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    mutmut = [sys.executable, "-m", "mutmut"]
    code = subprocess.call([*mutmut, "run", "--max-children", str(args.max_children), *args.mutants],
                           cwd=dest, env=env)
    result = summary(dest)
    (dest / "summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "not_killed"}))
    print("not killed (cd build/mutation && mutmut show NAME):", *result["not_killed"], sep="\n  ")
    return code


if __name__ == "__main__":
    sys.exit(main())
