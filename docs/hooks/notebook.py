"""MkDocs hook: ``<!-- notebook: lab.ipynb -->`` on a page becomes that executed notebook (a path relative
to the page): its markdown cells, its code cells and their outputs (text, and figures as inline PNGs), so
the page shows what the notebook printed and drew when it last ran (``make lab`` runs it). A notebook
without outputs, or with an error, fails the build: the page would not show what it promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

PLACEHOLDER = re.compile(r"<!-- notebook: ([^ >]+) -->")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _text(value) -> str:
    return ANSI.sub("", "".join(value) if isinstance(value, list) else value)


def _fence(text: str, lang: str = "text") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _outputs(outputs: list[dict], where: str) -> list[str]:
    parts: list[str] = []
    stream: list[str] = []  # consecutive stream outputs (stdout and stderr, in order) as one block

    def flush() -> None:
        if stream:
            parts.append(_fence("".join(stream)))
            stream.clear()

    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            stream.append(_text(out["text"]))
            continue
        flush()
        if kind == "error":
            raise ValueError(f"{where}: the notebook ran into {out.get('ename')}: {out.get('evalue')}; run it again "
                             "(make lab) once it runs through")
        data = out.get("data", {})
        if "image/png" in data:
            parts.append(f'![output](data:image/png;base64,{_text(data["image/png"]).strip()})')
        elif "text/plain" in data:
            parts.append(_fence(_text(data["text/plain"])))
    flush()
    return parts


def render(path: Path) -> str:
    """The notebook at ``path`` as markdown."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts: list[str] = []
    code_cells = ran = 0
    for i, cell in enumerate(nb["cells"], 1):
        source = _text(cell["source"]).strip()
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code" and source:
            code_cells += 1
            ran += cell.get("execution_count") is not None
            parts.append(_fence(source, "python"))
            parts += _outputs(cell.get("outputs", []), f"{path.name}, cell {i}")
    if ran < code_cells:
        raise ValueError(f"{path}: {code_cells - ran} of {code_cells} code cells have not run; execute the "
                         "notebook (make lab) before building the site")
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    folder = Path(page.file.abs_src_path).parent
    return PLACEHOLDER.sub(lambda m: render(folder / m.group(1)), markdown)
