"""Run a jupytext notebook (``docs/tutorials/lab.py``) top to bottom in a fresh kernel and write it as an
executed ``.ipynb`` with its outputs (what the docs page shows)::

    python tools/run_notebook.py docs/tutorials/lab.py docs/tutorials/lab.ipynb

A cell that fails stops the run with its error; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def execute(source: str | Path, cwd: str | Path, timeout: int = 600) -> Any:
    """The notebook of ``source`` (a jupytext file or an .ipynb), executed with ``cwd`` as its working folder."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(str(source))
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may take")
    args = parser.parse_args()
    if not Path(args.source).is_file():
        parser.error(f"{args.source} does not exist; give the notebook's source, e.g. docs/tutorials/lab.py")
    import nbformat
    from nbclient.exceptions import CellExecutionError

    start = time.perf_counter()
    try:
        nb = execute(args.source, Path.cwd(), args.timeout)
    except CellExecutionError as e:
        print(f"{e}\nerror: {args.source} failed (the cell above); nothing written", file=sys.stderr)
        sys.exit(2)
    for i, cell in enumerate(nb.cells, 1):  # the file changes only when a cell or an output does:
        cell.metadata.pop("execution", None)  # no timestamps,
        cell.id = f"cell-{i}"  # and ids by position instead of jupytext's random ones
    nbformat.write(nb, args.out)
    print(f"ran {args.source} in {time.perf_counter() - start:.0f} s; wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
