"""The report's HTML building blocks: style, escaping, tables, images and number formats."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2733;
       margin: 0; background: #f5f7fa; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 28px; margin: 8px 0 4px; } h2 { font-size: 21px; margin: 36px 0 8px; border-bottom: 2px solid #e3e8ef; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.lede { color: #52606d; margin: 0 0 12px; }
.rule { margin: 0 0 6px; font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e8ef; text-align: right; }
th:first-child, td:first-child, th.text, td.text { text-align: left; }
th { background: #f0f3f7; font-weight: 600; }
tr.total td { font-weight: 600; border-top: 2px solid #c9d2dc; }
tr.aside td { color: #52606d; font-style: italic; border-top: 1px dashed #c9d2dc; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0 16px; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; } .figures img { max-width: 520px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; }
.card { flex: 1 1 300px; border: 1px solid #dde3ea; border-radius: 8px; padding: 12px 16px; }
.card h3 { margin-top: 4px; }
.tier { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; }
.tier-sql { background: #d3f2e0; color: #0b6b3a; } .tier-mql { background: #fdf0cc; color: #7a5a00; }
.tier-none { background: #eceff3; color: #52606d; }
.up { color: #0b6b3a; } .down { color: #a4262c; }
ul { margin: 4px 0 8px 18px; padding: 0; } li { margin: 2px 0; }
.note { color: #52606d; font-size: 13px; }
section.appendix { margin-top: 48px; border-top: 4px solid #e3e8ef; }
"""


class Html(str):
    """Text that is already HTML: tables put it in as it is."""


def e(text) -> str:
    return html.escape(str(text), quote=True)


def finite(value) -> bool:
    return value is not None and not pd.isna(value) and np.isfinite(float(value))


def count(value) -> str:
    return f"{int(value):,}" if finite(value) else "—"


def number(value) -> str:
    return f"{float(value):,.1f}" if finite(value) else "—"


def rate(value) -> str:
    if not finite(value):
        return "—"
    percent = 100 * float(value)
    return f"{percent:.0f} %" if percent >= 9.95 else f"{percent:.1f} %"


def money(value, currency: str) -> str:
    return f"{float(value):,.0f} {currency}".strip() if finite(value) else "—"


def table(header: list[str], rows: list[tuple[list, str]], text_columns: tuple[int, ...] = (0,)) -> str:
    """An HTML table; ``text_columns`` are aligned left, the others (numbers) right; a row's second item is its class."""
    align = ["text" if i in text_columns else "" for i in range(len(header))]
    head = "".join(f"<th class='{a}'>{e(h)}</th>" for h, a in zip(header, align))
    body = "".join(
        f"<tr class='{css}'>"
        + "".join(f"<td class='{a}'>{cell if isinstance(cell, Html) else e(cell)}</td>" for cell, a in zip(cells, align))
        + "</tr>"
        for cells, css in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{e(alt)}' src='data:image/png;base64,{data}'>"


def rule(text: str) -> str:
    """The one plain sentence under a table saying what its rule means."""
    return f"<p class='rule'>{e(text)}</p>"
