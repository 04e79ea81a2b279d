"""Checks every browser test file runs on its pages: weight on the wire and axe-core.

``page_weights`` visits each path twice in a fresh context (a first visit with an
empty cache, then a later one) and asserts the issue's limits; ``serious_violations``
injects the vendored axe-core into the current page and returns its serious and
critical findings. The pages forbid inline script (CSP), so a context that runs
axe must be made with ``bypass_csp=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from masnaa.portal.session import SESSION_COOKIE

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
FIRST_LOAD_LIMIT = 200 * 1024
LATER_LOAD_LIMIT = 50 * 1024


def transferred(page: Any, path: str, url: str) -> int:
    """Bytes the browser fetched over the network for one visit (Resource Timing's
    ``transferSize``: headers and body, 0 for what came from its cache)."""
    page.goto(url + path, wait_until="load")
    return int(page.evaluate(
        """() => performance.getEntriesByType('navigation')
                 .concat(performance.getEntriesByType('resource'))
                 .reduce((sum, e) => sum + e.transferSize, 0)"""
    ))


def page_weights(
    browser: Any, url: str, token: str | None, paths: Iterable[str]
) -> list[tuple[str, int, int]]:
    """``(path, first load, later load)`` in bytes, each within the limits."""
    rows = []
    for path in paths:
        ctx = browser.new_context()  # an empty cache: a first visit
        if token is not None:
            ctx.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": url}])
        page = ctx.new_page()
        first = transferred(page, path, url)
        later = transferred(page, path, url)
        ctx.close()
        rows.append((path, first, later))
        assert first <= FIRST_LOAD_LIMIT, f"{path}: {first} bytes on first load"
        assert later <= LATER_LOAD_LIMIT, f"{path}: {later} bytes on a later load"
        assert later < first, f"{path}: the static files were not cached"
    return rows


def print_weights(
    capsys: Any, title: str, rows: list[tuple[str, int, int]],
    label: Callable[[str], str] = str, width: int = 28,
) -> None:
    with capsys.disabled():
        print(f"\n{title} (bytes transferred: first load, later load)")
        for path, first, later in rows:
            print(f"  {label(path):{width}} {first:7d} {later:7d}")


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][0]['html'][:120]}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]
