"""Pictures and an HTML page for patching results: a heatmap of a metric's change over two tags
(e.g. level × step), a board heatmap of per-cell changes, and a self-contained HTML report (images
embedded) that shows them next to the puzzles. Matplotlib runs headless (Agg)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from reasonlens.utils.io import atomic_write


def pyplot():
    import matplotlib  # lazy: heavy, sets backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return path


def heatmap(
    matrix: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    path,
    title: str,
    row_title: str = "",
    col_title: str = "",
    value_label: str = "",
) -> Path:
    """A diverging heatmap centred on 0 with the values written in the cells."""
    plt = pyplot()
    matrix = np.asarray(matrix, dtype=float)
    limit = max(float(np.nanmax(np.abs(matrix))) if matrix.size else 0.0, 1e-6)
    figure, axes = plt.subplots(figsize=(1.1 + 0.9 * len(col_labels), 1.0 + 0.6 * len(row_labels)))
    image = axes.imshow(matrix, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(range(len(col_labels)), col_labels)
    axes.set_yticks(range(len(row_labels)), row_labels)
    axes.set_xlabel(col_title)
    axes.set_ylabel(row_title)
    axes.set_title(title)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            colour = "white" if abs(value) > 0.6 * limit else "black"  # readable on the dark ends of the scale
            axes.text(j, i, f"{value:+.3f}", ha="center", va="center", fontsize=8, color=colour)
    figure.colorbar(image, ax=axes, label=value_label)
    return save_figure(figure, path)


def board_heatmap(
    values: np.ndarray,
    path,
    title: str,
    labels: np.ndarray | None = None,
    highlight: np.ndarray | None = None,
    value_label: str = "",
) -> Path:
    """A (rows × cols) grid of per-cell values (e.g. change in correctness), with optional text labels
    (e.g. the puzzle's digits) and highlighted cells (e.g. the patched positions)."""
    plt = pyplot()
    values = np.asarray(values, dtype=float)
    limit = max(float(np.nanmax(np.abs(values))) if values.size else 0.0, 1e-6)
    figure, axes = plt.subplots(figsize=(1.2 + 0.45 * values.shape[1], 1.0 + 0.45 * values.shape[0]))
    image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title)
    for (i, j), _ in np.ndenumerate(values):
        if labels is not None:
            axes.text(j, i, str(labels[i, j]), ha="center", va="center", fontsize=9)
        if highlight is not None and highlight[i, j]:
            axes.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    figure.colorbar(image, ax=axes, label=value_label)
    return save_figure(figure, path)


def _image_tag(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def table_html(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def grid_html(grid: np.ndarray, marks: np.ndarray | None = None) -> str:
    """A puzzle grid as an HTML table; cells in ``marks`` get a highlighted background."""
    cells = []
    for i, row in enumerate(np.asarray(grid)):
        tds = "".join(
            f'<td class="{"mark" if marks is not None and marks[i, j] else ""}">{html.escape(str(v))}</td>'
            for j, v in enumerate(row)
        )
        cells.append(f"<tr>{tds}</tr>")
    return f'<table class="grid">{"".join(cells)}</table>'


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:+.4f}" if abs(value) < 10 else f"{value:.2f}"
    return "" if value is None else str(value)


def write_html_report(path, title: str, sections: list[tuple[str, str | Path]]) -> Path:
    """``sections``: (heading, body) where body is HTML text or the path of a PNG to embed."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}"
        "table.grid td{width:1.6em;height:1.6em;text-align:center}td.mark{background:#ffe08a}"
        "img{max-width:100%}h2{margin-top:1.6em}"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for heading, body in sections:
        content = _image_tag(body) if isinstance(body, Path) else body
        parts.append(f"<h2>{html.escape(heading)}</h2>{content}")
    parts.append("</body></html>")
    with atomic_write(path) as handle:
        handle.write("".join(parts))
    return Path(path)
