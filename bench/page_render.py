"""The page's main thread while it renders a long Markdown answer: `python -m bench.page_render [--smoke]`.

Headless Chromium (tests/support/browser.py finds it) opens the page on a local server and asks, over the
fetch transport, for an answer of DELTAS deltas of Markdown (paragraphs, a list, a fenced code block, a
table, over and over: the mock's `answer` and `repeat` directives, paced at 2 ms a delta). A
`PerformanceObserver` for `longtask` records every task of 50 ms or more while it streams, and a Chromium
trace (devtools.timeline) gives every main-thread task (`RunTask` on `CrRendererMain`), the longest and
their sum, so that tasks under the 50 ms threshold are measured too.

Baseline: the same stream, in the same page, rendered the way a renderer without incremental parsing
must (marked + DOMPurify on every token): the whole answer parsed and drawn again for each delta, here with
the same vendored parser so that only the strategy differs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

from app.factory import create_app
from app.settings import Settings
from bench import report
from providers.mock import MockProvider, tokenize
from tests.support.browser import MISSING, find_chromium
from tests.support.server import serve

MARKDOWN = (
    "Streaming **Markdown** with `inline code`, *emphasis* and a [link](https://example.com/).\n\n"
    "- a list item with a few words in it\n- another one, a little longer than the first\n\n"
    "```python\nasync def relay(stream):\n    async for token in stream:\n        yield token\n```\n\n"
    "| delta | arrived |\n|---|---|\n| 1 | 12 ms |\n| 2 | 14 ms |\n"
)
DELAY_MS = 2

# Records long tasks from now on; `window.__longTasks` holds their durations in ms.
OBSERVE_LONG_TASKS = """() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
  }).observe({ type: "longtask" });
}"""

# The baseline: fetch the same stream, and for every delta parse and draw the whole answer again.
RERENDER_EACH_DELTA = """async (body) => {
  const smd = await import("/static/vendor/smd.js");
  const root = document.createElement("div");
  document.getElementById("conversation").append(root);
  const response = await fetch("/v1/stream", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", text = "", deltas = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const frames = buffer.split("\\n\\n");
    buffer = frames.pop();
    for (const frame of frames) {
      if (!frame.includes("\\nevent: delta\\n") && !frame.startsWith("event: delta")) continue;
      const data = frame.split("\\n").find((line) => line.startsWith("data: "));
      text += JSON.parse(data.slice(6)).text;
      deltas += 1;
      root.replaceChildren();
      const parser = smd.parser(smd.default_renderer(root));
      smd.parser_write(parser, text);
      smd.parser_end(parser);
    }
  }
  return deltas;
}"""


def _request(deltas: int) -> dict[str, Any]:
    per_round = len(tokenize(MARKDOWN)) + 1
    mock = {"answer": MARKDOWN, "repeat": deltas // per_round + 1, "delay_ms": DELAY_MS}
    return {"messages": [{"role": "user", "content": "render me"}], "max_tokens": deltas, "mock": mock}


@dataclass(frozen=True)
class Measured:
    """One rendering run: what the page received and what its main thread did meanwhile."""

    received: int
    long_tasks: list[float]  # ms, from PerformanceObserver
    tasks: list[float]  # ms, every main-thread task in the trace


def main_thread_tasks(trace: bytes) -> list[float]:
    """The duration (ms) of every task the renderer's main thread ran, from a Chromium trace."""
    events = json.loads(trace)
    events = events["traceEvents"] if isinstance(events, dict) else events
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"
    }
    return [
        e["dur"] / 1000
        for e in events
        if e.get("name") == "RunTask" and e.get("ph") == "X" and (e["pid"], e["tid"]) in main
    ]


def measured(browser: Browser, page: Page, base_url: str, run: Callable[[Page], int]) -> Measured:
    page.goto(f"{base_url}/")
    page.evaluate(OBSERVE_LONG_TASKS)
    browser.start_tracing(
        page=page, categories=["devtools.timeline", "disabled-by-default-devtools.timeline"]
    )
    received = run(page)
    trace = browser.stop_tracing()
    return Measured(received, list(page.evaluate("() => window.__longTasks")), main_thread_tasks(trace))


def _ours(page: Page, deltas: int) -> int:
    request = _request(deltas)
    page.click("summary")
    page.fill("#max-tokens", str(deltas))
    page.fill("#mock", json.dumps(request["mock"]))
    page.fill("#prompt", "render me")
    page.click("#send")
    page.wait_for_function(
        "() => ['done', 'error', 'stopped'].includes(document.getElementById('status').dataset.state)",
        timeout=120_000,
    )
    return int(page.text_content("#deltas") or "0")


def _baseline(page: Page, deltas: int) -> int:
    return int(page.evaluate(RERENDER_EACH_DELTA, _request(deltas)))


def _longest(tasks: list[float], *, threshold: bool = False) -> str:
    if not tasks:
        return "none ≥ 50 ms" if threshold else "none"
    return f"{max(tasks):.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.parser(__doc__)
    args = parser.parse_args(argv)
    deltas = 200 if args.smoke else 2000
    chromium = find_chromium()
    if chromium is None:
        print(f"page_render: skipped, {MISSING}", file=sys.stderr)
        return 0
    with serve(create_app(Settings(), MockProvider())) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium.path), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            ours = measured(browser, page, server.base_url, lambda tab: _ours(tab, deltas))
            base = measured(browser, page, server.base_url, lambda tab: _baseline(tab, deltas))
        finally:
            browser.close()
    longest, longest_base = max(ours.tasks, default=0.0), max(base.tasks, default=0.0)
    busy, busy_base = sum(ours.tasks), sum(base.tasks)
    rows = [
        report.Row("deltas rendered", str(ours.received), str(base.received)),
        report.Row(
            "longest main-thread task (trace)",
            _longest(ours.tasks),
            _longest(base.tasks),
            report.ratio(longest, longest_base),
            target="< 50 ms",
            met=longest < 50,
        ),
        report.Row(
            "main thread busy (sum of tasks)",
            f"{busy:.0f} ms",
            f"{busy_base:.0f} ms",
            report.ratio(busy, busy_base),
        ),
        report.Row(
            "long tasks (PerformanceObserver)",
            f"{len(ours.long_tasks)}, longest {_longest(ours.long_tasks, threshold=True)}",
            f"{len(base.long_tasks)}, longest {_longest(base.long_tasks, threshold=True)}",
        ),
    ]
    report.print_table(
        f"Page: rendering a {deltas}-delta Markdown answer in Chromium",
        rows,
        ["Baseline: the whole answer parsed and drawn again on every delta, with the same parser."],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
