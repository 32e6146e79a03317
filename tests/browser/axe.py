"""axe-core (the pinned npm package, node_modules/axe-core) run in a Playwright page. Its source
is evaluated through the DevTools protocol, which the page's Content-Security-Policy does not
govern, so the strict policy stays on while the page is checked."""
import functools
import os

from wallet_web import ROOT_DIR

AXE_SOURCE = os.path.join(ROOT_DIR, "node_modules", "axe-core", "axe.min.js")
BLOCKING = ("serious", "critical")  # the impacts the dashboard must not have
RUN = "() => axe.run(document, {resultTypes: ['violations']})"


@functools.cache
def _source() -> str:
    if not os.path.exists(AXE_SOURCE):
        raise FileNotFoundError(f"{AXE_SOURCE} is missing: run bin/bootstrap (npm ci)")
    with open(AXE_SOURCE, encoding="utf-8") as file:
        return file.read()


def blocking_violations(page) -> list[str]:
    """Every serious or critical axe violation of the page as it is now, one line per element:
    the rule, the element's selector, the rule's help and what this element lacks."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_source())
    results = page.evaluate(RUN)
    return [f"{violation['id']} ({violation['impact']}) at {' '.join(map(str, node['target']))}: "
            f"{violation['help']}. {' '.join(node['failureSummary'].split())}"
            for violation in results["violations"] if violation["impact"] in BLOCKING
            for node in violation["nodes"]]
