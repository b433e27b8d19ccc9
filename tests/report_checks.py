"""What every rendered marketing report must hold, whatever model and table it comes from (issue 12's checks)."""

from __future__ import annotations

import html
import re

# The model's machinery, which marketing's sections never name (the appendix may).
SHAP_WORDS = re.compile(r"\b(SHAP|Shapley|beeswarm|log-odds|mean absolute|features?|ROC|AUC|base value)\b", re.IGNORECASE)


def visible_text(page: str) -> str:
    without_images = re.sub(r"src='data:image/png;base64,[^']*'", "", page)
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", without_images, flags=re.DOTALL)))


def marketing_part(page: str) -> str:
    start = page.index("<section class='marketing'>")
    return page[start:page.index("<section class='appendix'>", start)]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def row_cells(section: str, first_cell: str) -> list[str]:
    """The visible cells of the table row whose first cell reads ``first_cell``."""
    row = re.search(rf"<tr[^>]*><td[^>]*>{re.escape(html.escape(first_cell, quote=True))}</td>(.*?)</tr>", section)
    assert row, f"no row {first_cell!r}"
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]


def _section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{html.escape(heading, quote=True)}")
    following = page.find("<h2>", start + 4)
    return page[start:following if following > 0 else len(page)]


def check_marketing_report(page: str, model, rendering) -> None:
    """No console error, not blank, no SHAP word or registry name in marketing's sections, three example leads, and
    the held-out leads counted alike by the header, the tiers, the gains and (when scores were written back) the
    movement tables."""
    import browser

    assert rendering.errors == []
    assert not browser.is_blank(rendering.screenshot)
    marketing = marketing_part(page)
    text = visible_text(marketing)
    assert not SHAP_WORDS.findall(text), SHAP_WORDS.findall(text)
    labels = {model.registry[name].label for name in model.features} | {
        model.registry[name].business_label for name in model.features}
    names = {name for name in model.features} | {model.registry[name].business_field for name in model.features}
    # A one-word lower-case name ("channel") reads as English; snake_case and CamelCase names read as columns.
    columns = {name for name in names if not re.fullmatch(r"[a-z]+", name)}
    raw = sorted(name for name in columns if name not in labels and not any(name in label for label in labels)
                 and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text))
    assert not raw, f"registry names in marketing's sections: {raw}"
    assert "models:/" not in text and "walk-forward" not in text
    assert marketing.count("class='card example'") == 3

    header = re.search(r"checked on ([\d,]+) leads it never saw .*?: ([\d,]+) of them", text, re.DOTALL)
    assert header, "the header counts the held-out leads"
    leads, converted = _number(header.group(1)), _number(header.group(2))
    tiers = _section(marketing, "Tiers")
    total = row_cells(tiers, "All held-out leads")
    assert _number(total[1]) == leads and _number(total[3]) == converted
    parts = [row_cells(tiers, name) for name in ("SQL", "MQL", "Not qualified")]
    assert sum(_number(p[1]) for p in parts) == leads and sum(_number(p[3]) for p in parts) == converted
    gains = visible_text(_section(marketing, next(h for h in re.findall(r"<h2>([^<]+)", marketing)
                                                  if h.startswith("How well the score finds"))))
    said = re.search(r"Working the ([\d,]+) held-out leads .*? of the ([\d,]+) that converted", gains, re.DOTALL)
    assert said and (_number(said.group(1)), _number(said.group(2))) == (leads, converted)
    if "Movement since scoring began" in marketing and "Week starting" in marketing:
        movement = _section(marketing, "Movement since scoring began")
        weeks = row_cells(movement, "All weeks")
        channels = row_cells(movement, "All channels")
        assert weeks == channels
        assert _number(weeks[1]) <= _number(weeks[0])
