"""Open every page of the built site in headless Chromium and report what a reader would meet.

    python docs/site/sitecheck.py build/site    # check every page; exit 1 on a problem

The site is served by a real HTTP server on 127.0.0.1, which logs every file asked of
it; Debian's ``chromium`` loads each page, driven by ``selenium`` through Debian's
``chromedriver``. Chromium resolves no host name but 127.0.0.1 (``--host-resolver-rules``),
so a page that needs the internet shows it with a failed load. After MathJax has
typeset a page (``MathJax.startup.promise``), the page reports:

* its formulas: every ``mjx-container`` (one per formula), the TeX of each formula that
  MathJax could not parse (an ``mjx-merror``), and each math element of Sphinx's
  (``.math``) that holds no rendered formula;
* its links (``a[href]``) and the ids it defines, so links and their anchors can be
  resolved against the pages and files of the site;
* the resources it loaded, and what Chromium logged as an error (a failed load, a
  script error).

``check`` turns these into a list of problems. External links (``http(s)://`` another
host) are not fetched: this machine has no internet, and a test that depends on other
people's servers fails for their reasons. They are reported in ``Report.external`` and
must at least be well-formed http(s) URLs with a host.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver"
# The flags of a quiet, offline browser: no sandbox (root in a container), no GPU, no
# background traffic of its own; no name resolves except 127.0.0.1.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# Runs in the page once it has loaded: waits for MathJax (on pages with math), then reports.
REPORT_JS = """
const done = arguments[arguments.length - 1];
const typeset = window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve();
typeset.then(() => {
  const errors = [];
  if (window.MathJax && MathJax.startup && MathJax.startup.document) {
    for (const item of MathJax.startup.document.math) {
      const error = item.typesetRoot && item.typesetRoot.querySelector('mjx-merror');
      const message = error && (error.getAttribute('data-mjx-error') || error.textContent);
      if (error) errors.push([item.math, message]);
    }
  }
  done({
    formulas: document.querySelectorAll('mjx-container').length,
    errors: errors,
    unrendered: [...document.querySelectorAll('.math')]
      .filter(node => !node.querySelector('mjx-container')).map(node => node.textContent),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
    resources: performance.getEntriesByType('resource').map(entry => entry.name),
  });
}, failure => done({failure: String(failure)}));
"""


def chromium_missing() -> str | None:
    """Why Chromium cannot run here, or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            return f"{path} is missing (Debian: {INSTALL})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[docs]')"
    return None


@dataclass
class Page:
    """What Chromium found on one page."""

    path: str  # relative to the site, e.g. "layers/LinearLayer.html"
    formulas: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (TeX, MathJax's message)
    unrendered: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    resources: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What Chromium found on the pages it visited, and the problems, by kind."""

    pages: dict[str, Page]
    math: list[str]  # formulas with a MathJax error, or never typeset
    links: list[str]  # internal links to no page or no anchor; malformed external links
    loads: list[str]  # loads from outside the site, failed loads, errors the browser logged
    external: list[str]  # external links (not fetched)
    requests: list[tuple[str, int]]  # (path, HTTP status), as the server logged them

    @property
    def problems(self) -> list[str]:
        return self.math + self.links + self.loads

    @property
    def formulas(self) -> int:
        return sum(page.formulas for page in self.pages.values())


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Serve ``folder`` on 127.0.0.1: yields the base URL and the log of (path, status)."""
    log: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            log.append((urllib.parse.urlsplit(self.path).path, int(code)))

        def log_message(self, format, *args):  # quiet: the log above is the record
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def chromium():
    """Headless Chromium with a fresh profile, driven by selenium through chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mnn-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_script_timeout(60)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def visit(driver, base: str, path: str) -> Page:
    """Load one page and collect what it shows (see REPORT_JS)."""
    driver.get(base + path)
    found = driver.execute_async_script(REPORT_JS)
    console = [entry["message"] for entry in driver.get_log("browser")
               if entry["level"] == "SEVERE"]
    if "failure" in found:
        return Page(path, console=[*console, f"MathJax failed: {found['failure']}"])
    return Page(path, found["formulas"], [tuple(error) for error in found["errors"]],
                found["unrendered"], found["links"], set(found["ids"]), found["resources"],
                console)


def html_pages(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.html"))


def check(folder: Path, paths: list[str] | None = None) -> Report:
    """Visit the pages ``paths`` of the built site in ``folder`` (default: every page), and
    the pages their anchored links point at; collect the problems a reader would meet."""
    folder = Path(folder)
    pages: dict[str, Page] = {}
    math, links, loads = [], [], []
    with serve(folder) as (base, requests), chromium() as driver:

        def page(path: str) -> Page:
            if path not in pages:
                pages[path] = visit(driver, base, path)
            return pages[path]

        for path in paths or html_pages(folder):
            page(path)
        for seen in list(pages.values()):
            math += [f"{seen.path}: formula {tex!r} does not render: {message}"
                     for tex, message in seen.errors]
            math += [f"{seen.path}: formula {tex!r} was never typeset" for tex in seen.unrendered]
            links += [f"{seen.path}: broken link {link}: {why}" for link in seen.links
                      if link.startswith(base) and (why := _broken(link[len(base):], folder, page))]
            loads += [f"{seen.path}: loaded {url}, which is not part of the site"
                      for url in seen.resources if not url.startswith(base)]
            loads += [f"{seen.path}: the browser logged: {line}" for line in seen.console]
        external = sorted({link for seen in pages.values() for link in seen.links
                           if not link.startswith(base)})
    links += [f"external link {link} is not a well-formed http(s) URL"
              for link in external if not _well_formed(link)]
    loads += [f"the server answered {status} for {path}" for path, status in requests
              if status >= 400]
    return Report(pages, math, links, loads, external, requests)


def _broken(link: str, folder: Path, page) -> str:
    """Why a link within the site (relative to its root) is broken; "" when it is not."""
    target, _, anchor = urllib.parse.unquote(link).partition("#")
    target = target.partition("?")[0]
    if target == "" or target.endswith("/"):
        target += "index.html"
    if not (folder / target).is_file():
        return f"{target} is not in the site"
    if not anchor:
        return ""
    if not target.endswith(".html"):
        return f"{target} is not a page, it cannot have the anchor {anchor!r}"
    if anchor not in page(target).ids:
        return f"{target} has no element with id {anchor!r}"
    return ""


def _well_formed(link: str) -> bool:
    parts = urllib.parse.urlsplit(link)
    return parts.scheme in ("http", "https", "mailto") and bool(parts.netloc or parts.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (e.g. build/site)")
    args = parser.parse_args(argv)
    if why := chromium_missing():
        print(f"cannot run Chromium: {why}", file=sys.stderr)
        return 2
    report = check(args.site)
    print(f"{len(report.pages)} pages, {report.formulas} formulas, "
          f"{len(report.external)} external links (not fetched), {len(report.problems)} problems")
    for problem in report.problems:
        print("  " + problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
