"""SVG to PNG through headless Chromium (Debian's, driven by Playwright): the same renderer as
the browser, so the PNG looks like the page. Nothing to install beyond what `make test` does."""

from __future__ import annotations

import os
import re
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


class PngUnavailable(RuntimeError):
    pass


def svg_to_png(svg: str, scale: float = 2.0) -> bytes:
    if not Path(CHROMIUM).exists():
        raise PngUnavailable(f"PNG export needs Chromium at {CHROMIUM} (apt-get install chromium), or set CHROMIUM")
    size = re.search(r'width="([\d.]+)"', svg), re.search(r'height="([\d.]+)"', svg)
    if size[0] is None or size[1] is None:
        raise ValueError("an SVG without a width and a height cannot be drawn as a PNG")
    width, height = int(float(size[0].group(1))), int(float(size[1].group(1)))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=scale)
            page.set_content(f'<html><body style="margin:0;background:#fff">{svg}</body></html>')
            return page.locator("svg").screenshot(type="png")
        finally:
            browser.close()
