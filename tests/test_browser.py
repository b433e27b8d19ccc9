"""The browser harness sees what would be wrong with a report: a blank page, script
errors, a missing file, a page cut short."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from browser import is_blank


def write_page(folder: Path, body: str, title: str = "page") -> Path:
    path = folder / "page.html"
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body>{body}</body></html>"
    )
    return path


def test_page_with_text_renders_without_errors(chromium, tmp_path: Path):
    page = write_page(tmp_path, "<h1>Lead scores</h1><p>Pricing-page visits raise the score.</p>", "Report")
    rendering = chromium.render(page, tmp_path / "page.png")
    assert rendering.title == "Report"
    assert rendering.errors == []
    assert not is_blank(rendering.screenshot)


def test_logs_and_warnings_are_not_errors(chromium, tmp_path: Path):
    page = write_page(tmp_path, "<p>text</p><script>console.log('fine'); console.warn('careful')</script>")
    rendering = chromium.render(page, tmp_path / "page.png")
    assert [entry.level for entry in rendering.console] == ["INFO", "WARNING"]
    assert rendering.errors == []


@pytest.mark.parametrize(
    "script, source, message",
    [
        ("console.error('boom')", "console-api", '"boom"'),
        ("throw new Error('kaput')", "javascript", "Uncaught Error: kaput"),
    ],
    ids=["console-error", "uncaught-exception"],
)
def test_script_errors_are_reported(chromium, tmp_path: Path, script: str, source: str, message: str):
    page = write_page(tmp_path, f"<p>text</p><script>{script}</script>")
    rendering = chromium.render(page, tmp_path / "page.png")
    [error] = rendering.errors
    assert error.source == source
    assert error.message.endswith(message)


def test_missing_image_is_reported(chromium, tmp_path: Path):
    page = write_page(tmp_path, "<img src='chart.png' alt='Conversion by channel'>")
    rendering = chromium.render(page, tmp_path / "page.png")
    [error] = rendering.errors
    assert error.source == "network"
    assert "chart.png" in error.message


def test_empty_white_page_is_blank(chromium, tmp_path: Path):
    rendering = chromium.render(write_page(tmp_path, ""), tmp_path / "page.png")
    assert is_blank(rendering.screenshot)


def test_screenshot_covers_a_tall_page(chromium, tmp_path: Path):
    # A red band at the very bottom shows the capture reaches the page's end.
    body = "<div style='height: 4900px'>top</div><div style='height: 100px; background: #f00'></div>"
    page = write_page(tmp_path, f"<style>body {{ margin: 0 }}</style>{body}")
    rendering = chromium.render(page, tmp_path / "page.png", width=800)
    assert rendering.height == 5000
    with Image.open(rendering.screenshot) as image:
        assert image.size == (800, 5000)
        assert image.convert("RGB").getpixel((400, 4999)) == (255, 0, 0)


@pytest.mark.parametrize("stray, blank", [(0, True), (100, True), (1_000, False)])
def test_a_few_stray_pixels_still_count_as_blank(tmp_path: Path, stray: int, blank: bool):
    image = Image.new("RGB", (1_000, 1_000), "white")
    for index in range(stray):
        image.putpixel((index % 1_000, index // 1_000), (0, 0, 0))
    image.save(tmp_path / "page.png")
    assert is_blank(tmp_path / "page.png") is blank
