"""Render an HTML file in headless Chromium: a full-page screenshot and the console log.

Tests drive Debian's ``chromium`` through its own ``chromedriver`` (``make test`` installs
both) and name both paths, so Selenium never fetches a driver from the internet.

>>> with launch() as browser:  # doctest: +SKIP
...     rendering = browser.render(Path("report.html"), Path("report.png"))
>>> rendering.errors, is_blank(rendering.screenshot)  # doctest: +SKIP
([], False)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # Chromium refuses root with its sandbox on, and containers lack its namespaces
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a container's small /dev/shm crashes the renderer
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
)
# A report taller than this is a bug of its own; its screenshot would only cost memory.
MAX_HEIGHT = 20_000
# A script stuck in a loop fails its test instead of hanging the suite.
PAGE_LOAD_TIMEOUT = 30


@dataclass(frozen=True)
class ConsoleEntry:
    level: str  # SEVERE, WARNING, INFO or DEBUG
    source: str  # console-api, javascript (uncaught exceptions), network (failed loads), ...
    message: str


@dataclass(frozen=True)
class Rendering:
    """What a page showed: its screenshot, console log, title and full height in CSS pixels."""

    screenshot: Path
    console: tuple[ConsoleEntry, ...]
    title: str
    height: int

    @property
    def errors(self) -> list[ConsoleEntry]:
        """``console.error`` calls, uncaught exceptions and resources that failed to load."""
        return [entry for entry in self.console if entry.level == "SEVERE"]


class Browser:
    """A headless Chromium session that renders pages one after another; see `launch`."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self._driver = driver

    def render(self, html: Path, screenshot: Path, width: int = 1280) -> Rendering:
        """Open ``html``, save a full-page PNG at ``screenshot`` and report what the page showed."""
        driver = self._driver
        # Reading the log empties it: whatever the previous page logged late is not this page's.
        driver.get_log("browser")
        # A page sized by its viewport (100vh) is measured in an ordinary window, not in
        # the previous page's tall one.
        driver.set_window_size(width, 800)
        driver.get(html.resolve().as_uri())  # returns after the load event
        height, frame = driver.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
        )
        # Even headless, the window size includes a frame around the viewport.
        driver.set_window_size(width, min(height, MAX_HEIGHT) + frame)
        screenshot.write_bytes(driver.get_screenshot_as_png())
        console = tuple(
            ConsoleEntry(entry["level"], entry["source"], entry["message"])
            for entry in driver.get_log("browser")
        )
        return Rendering(screenshot, console, driver.title, height)


@contextmanager
def launch() -> Iterator[Browser]:
    """Start headless Chromium; it quits when the block ends, errors included."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        yield Browser(driver)
    finally:
        driver.quit()


def is_blank(png: Path, tolerance: float = 1e-4) -> bool:
    """Whether at most a ``tolerance`` share of the pixels differ from the most common colour.

    One word on an empty 1280 x 650 page changes about 250 pixels, 3e-4 of them.
    """
    with Image.open(png) as image:
        rgb = image.convert("RGB")
    pixels = rgb.width * rgb.height
    most_common, _ = max(rgb.getcolors(maxcolors=pixels))
    return pixels - most_common <= tolerance * pixels
