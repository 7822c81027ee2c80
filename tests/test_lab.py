"""The lab notebook (docs/tutorials/lab.py): it runs top to bottom on digits within the issue's five
minutes, draws its figures and measures what it says; the executed copy the docs page shows
(lab.ipynb) is the same code, run through; the docs hook renders it and refuses a notebook that has
not run."""

import json
import time

import pytest

from conftest import ROOT, load_file

LAB = ROOT / "docs" / "tutorials" / "lab.py"
EXECUTED = ROOT / "docs" / "tutorials" / "lab.ipynb"
FIGURES = 5  # the space's sizes, one drift curve, the surrogate's scatter, the Pareto fronts, two drift curves


def winner_size(arch):
    from lightning_nas.blocks import n_params

    return n_params(arch, (1, 8, 8), 10)


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def texts(cell):
    return "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")


def images(nb):
    return sum("image/png" in o.get("data", {}) for c in code_cells(nb) for o in c["outputs"])


@pytest.mark.slow
def test_the_lab_runs_top_to_bottom_within_five_minutes(tmp_path, monkeypatch):
    from lightning_nas import space

    monkeypatch.setenv("LAB_DIR", str(tmp_path / "lab"))
    run_notebook = load_file(ROOT / "tools" / "run_notebook.py", "run_notebook")
    start = time.perf_counter()
    nb = run_notebook.execute(LAB, tmp_path)  # a failing cell raises, with its traceback
    seconds = time.perf_counter() - start
    print(f"lab: {seconds:.0f} s")
    assert seconds < 300
    cells = code_cells(nb)
    assert all(c["execution_count"] for c in cells)
    assert images(nb) == FIGURES  # every plt.show() drew, after the search and the surrogate wrote their files
    out = "\n".join(texts(c) for c in cells)
    assert f"distinct architectures: {space.space_size()}" in out
    lab = tmp_path / "lab"
    assert (lab / "surrogate" / "metadata.json").is_file()
    for strategy in ("analognas_ea", "nsga2"):
        assert len(list((lab / f"search_{strategy}" / "winners").glob("winner_*.yaml"))) == 3
    # The comparison it prints is the one it measured: the winner is the search's first.
    winner = space.load_architecture(str(lab / "search_analognas_ea" / "winners" / "winner_1.yaml"))
    assert f"winner: {winner_size(winner):,} parameters" in out
    assert "winner / ResNet-20: parameters" in out


def test_the_executed_notebook_is_the_lab_source_run_through():
    import jupytext

    source = [c["source"] for c in code_cells(jupytext.read(str(LAB)))]
    executed = json.loads(EXECUTED.read_text())
    cells = code_cells(executed)
    assert ["".join(c["source"]) for c in cells] == source, "lab.ipynb is stale: run `make lab`"
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))  # one run, in order
    assert not any(o["output_type"] == "error" for c in cells for o in c["outputs"])
    assert images(executed) == FIGURES


def test_the_docs_hook_renders_outputs_and_refuses_a_notebook_that_has_not_run(tmp_path):
    hook = load_file(ROOT / "docs" / "hooks" / "notebook.py", "notebook_hook")
    page = hook.render(EXECUTED)
    assert page.count("](data:image/png;base64,") == FIGURES
    assert "```python\nimport logging" in page and "distinct architectures:" in page
    nb = json.loads(EXECUTED.read_text())
    for cell in code_cells(nb):
        cell["execution_count"], cell["outputs"] = None, []
    stale = tmp_path / "stale.ipynb"
    stale.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="have not run; execute the notebook"):
        hook.render(stale)
    failed = json.loads(EXECUTED.read_text())
    code_cells(failed)[1]["outputs"] = [{"output_type": "error", "ename": "KeyError", "evalue": "'x'", "traceback": []}]
    (tmp_path / "failed.ipynb").write_text(json.dumps(failed))
    with pytest.raises(ValueError, match="cell 4: the notebook ran into KeyError"):
        hook.render(tmp_path / "failed.ipynb")
