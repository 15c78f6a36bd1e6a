"""The one markdown table writer: every markdown table the project prints or writes (report.md, the metric tables of
evaluation and ``experiments/score.py``) goes through :func:`markdown_table`.

It imports nothing from ``lego_arta``, so any layer may use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

MISSING: Final = "–"  # the cell of a missing value (None or NaN)
_NUMBER: Final = re.compile(r"-?\d")


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured markdown table, its columns padded to line up.

    Cells: ``None`` and NaN are :data:`MISSING`, floats get two decimals, anything else is ``str(value)`` with ``|``
    escaped and newlines made spaces (format a number as a string to show it otherwise).

    Args:
        header: the column names.
        rows: one sequence of cells per row, as many as ``header``.
        align: one ``l`` (left) or ``r`` (right) per column; by default the first column is left-aligned and another
            one right-aligned when every cell of it is a number (starts with a digit or ``-``) or :data:`MISSING`.

    >>> print(markdown_table(["model", "n", "IoU"], [["base, few-shot", 3, "60.82 ± 1.00"], ["SFT", 1, None]]))
    | model          |   n |          IoU |
    |:---------------|----:|-------------:|
    | base, few-shot |   3 | 60.82 ± 1.00 |
    | SFT            |   1 |            – |
    >>> print(markdown_table(["metric", "difference"], [["iou", "+1.50"]], align="lr"))
    | metric | difference |
    |:-------|-----------:|
    | iou    |      +1.50 |
    """
    names = [str(name) for name in header]
    body = [[_cell(value) for value in row] for row in rows]
    for i, cells in enumerate(body):
        if len(cells) != len(names):
            raise ValueError(f"markdown table row {i}: {len(cells)} cells for {len(names)} columns")
    columns = [[cells[j] for cells in body] for j in range(len(names))]
    if align is None:
        right = [j > 0 and all(v == MISSING or _NUMBER.match(v) for v in col) for j, col in enumerate(columns)]
    elif len(align) != len(names) or set(align) - {"l", "r"}:
        raise ValueError(f"align={align!r}: expected one 'l' or 'r' per column ({len(names)})")
    else:
        right = [a == "r" for a in align]
    widths = [max([len(name), 3, *(len(v) for v in col)]) for name, col in zip(names, columns, strict=True)]

    def line(values: Iterable[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "".join(f"|{'-' * (w + 1)}:" if r else f"|:{'-' * (w + 1)}" for w, r in zip(widths, right, strict=True))
    return "\n".join([line(names), rule + "|", *(line(cells) for cells in body)])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")
