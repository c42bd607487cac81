"""The README's screenshots, taken from a running demo site as a person would see it.

    make demo                      # prints the staff login and the annotators' logins
    python docs/screenshots/take.py --url http://127.0.0.1:8000 --staff admin:PASSWORD \
        --annotator demo-annotator-1:PASSWORD --annotator demo-annotator-2:PASSWORD --votes 12

Each annotator logs in and votes ``--votes`` comparisons with the keyboard (1 / 2 / 3, a seeded
random choice: these are real votes in the demo's database, so Figure 1 fills in); then the staff
home, the study's dashboard and the comparison page are saved at 1,280 and 390 px wide into this
folder (home-1280.png, dashboard-390.png, ...). Needs Playwright and Debian's Chromium (as the
browser tests do)."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = {1280: 1800, 390: 2600}  # width: the most of a page's height kept (a long page is cut)


def login(page, url: str, who: str, then: str) -> None:
    username, password = who.split(":", 1)
    page.goto(f"{url}/accounts/login/?next={then}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def shoot(page, name: str, width: int) -> Path:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(300)
    height = min(page.evaluate("document.documentElement.scrollHeight"), WIDTHS[width])
    out = HERE / f"{name}-{width}.png"
    page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--staff", required=True, help="USER:PASSWORD")
    parser.add_argument("--annotator", action="append", default=[], help="USER:PASSWORD (repeat)")
    parser.add_argument("--study", default="demo")
    parser.add_argument("--votes", type=int, default=12, help="comparisons each annotator votes first")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    rng = random.Random(7)
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        for n, who in enumerate(args.annotator):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            login(page, args.url, who, f"/annotate/study/{args.study}/next")
            for _ in range(args.votes):
                if not page.locator("#judge-form").count():
                    break  # nothing left for this annotator
                with page.expect_navigation():
                    page.keyboard.press(rng.choice("123"))
            if n == len(args.annotator) - 1 and page.locator("#judge-form").count():
                saved += [shoot(page, "comparison", width) for width in WIDTHS]
            page.close()
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        login(page, args.url, args.staff, "/")
        saved += [shoot(page, "home", width) for width in WIDTHS]
        page.goto(f"{args.url}/dashboard/{args.study}/")
        page.wait_for_selector("#agreement .details table", timeout=60_000)
        saved += [shoot(page, "dashboard", width) for width in WIDTHS]
        browser.close()
    for path in saved:
        print(path)


if __name__ == "__main__":
    main()
