"""The Prefect UI in a real browser: headless Chromium (Debian's ``chromium`` + ``chromedriver``, driven
by selenium) opens the shared quick rebuild's pages on the test server (started with its UI, see
tests/prefect_server.py) and checks what a person sees: every report image loaded (natural width > 0),
in the default (V2) and the V1 UI, and the metrics tables show the run's accuracy.

Screenshots of the flow run page (logs, task runs) and the report go to $AFFECTFLOW_SCREENSHOTS when it is set (the ones
in docs/ were made so), else to a temporary directory.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect_server import Rebuilt, get_server, run, shared_rebuild
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
PAGE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        reason = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    # An explicit driver path: selenium never looks for (or downloads) a driver of its own.
    chrome = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    yield chrome
    chrome.quit()


@pytest.fixture(scope="module")
def rebuilt(request: pytest.FixtureRequest) -> Rebuilt:
    return shared_rebuild(request.config)


@pytest.fixture(scope="module")
def artifacts(rebuilt: Rebuilt, request: pytest.FixtureRequest) -> dict[str, dict]:
    """The first rebuild's artifacts by key: id, type and the number of images its markdown embeds."""
    code = (
        "import json, sys\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId\n"
        "with get_client(sync_client=True) as c:\n"
        "    f = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[sys.argv[1]]))\n"
        "    print(json.dumps({a.key: {'id': str(a.id), 'type': a.type, 'images': str(a.data).count('](data:image/png')}\n"
        "                      for a in c.read_artifacts(artifact_filter=f)}))\n"
    )
    res = run([sys.executable, "-c", code, rebuilt.first["flow_run"]["id"]], get_server(request.config).env())
    assert res.returncode == 0, res.stdout[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("AFFECTFLOW_SCREENSHOTS")
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    Path(chosen).mkdir(parents=True, exist_ok=True)
    return Path(chosen)


def screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The visible page as a 256-colour PNG (a few hundred kB less than Chromium's, for docs/)."""
    from PIL import Image

    with Image.open(io.BytesIO(browser.get_screenshot_as_png())) as img:
        img.convert("RGB").quantize(256).save(path, optimize=True)
    assert path.stat().st_size > 10_000, path


def ui_base(request: pytest.FixtureRequest) -> str:
    return get_server(request.config).url.removesuffix("/api")


def open_page(browser: webdriver.Chrome, url: str, ready_js: str) -> None:
    """Load a page of the single-page app and wait until ``ready_js`` is true (the data has arrived)."""
    browser.get(url)
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda b: b.execute_script(f"return Boolean({ready_js})"))


IMAGES_LOADED = ("Array.from(document.images).filter(i => i.src.startsWith('data:image/png')).length >= {n} && "
                 "Array.from(document.images).every(i => i.complete)")
# Text of the cell in column `header` of the row whose first cell is `row`, in any table on the page.
TABLE_CELL = """
for (const t of document.querySelectorAll('table')) {
  const heads = Array.from(t.querySelectorAll('th')).map(h => h.innerText.trim());
  const col = heads.indexOf(arguments[0]);
  if (col < 0) continue;
  for (const tr of t.querySelectorAll('tbody tr')) {
    const cells = Array.from(tr.querySelectorAll('td')).map(c => c.innerText.trim());
    if (cells[0] === arguments[1]) return cells[col];
  }
}
return null;
"""


def png_widths(browser: webdriver.Chrome) -> list[int]:
    return browser.execute_script("return Array.from(document.images).filter(i => i.src.startsWith("
                                  "'data:image/png')).map(i => i.naturalWidth)")


@pytest.mark.parametrize("ui", ["v2", "v1"])
def test_report_images_load_and_metrics_show_accuracy(ui: str, browser: webdriver.Chrome, rebuilt: Rebuilt,
                                                      artifacts: dict[str, dict], shots: Path,
                                                      request: pytest.FixtureRequest) -> None:
    report = artifacts["rebuild-report-mosi"]
    assert report["type"] == "markdown" and report["images"] == 5, report  # confusion, curves, t-SNE, GFN, audit
    prefix = "/v2" if ui == "v2" else ""
    open_page(browser, f"{ui_base(request)}{prefix}/artifacts/artifact/{report['id']}",
              IMAGES_LOADED.format(n=report["images"]))
    widths = png_widths(browser)
    assert len(widths) == report["images"] and all(w > 0 for w in widths), widths
    accuracy = f"{100 * rebuilt.first['metrics']['argf']['accuracy']:.2f}"
    assert browser.execute_script(TABLE_CELL, "accuracy (%)", "argf") == accuracy
    assert browser.execute_script(TABLE_CELL, "class", "argf") == "negative"  # class names, not "0"
    if ui == "v2":
        browser.execute_script("Array.from(document.querySelectorAll('h2')).find(h => h.innerText === "
                               "'Metrics').scrollIntoView()")
        screenshot(browser, shots / "prefect-ui-report.png")
    # Each plot is also an artifact of its own, with its image inline.
    plot = artifacts["plot-mosi-argf-t-sne"]
    open_page(browser, f"{ui_base(request)}{prefix}/artifacts/artifact/{plot['id']}", IMAGES_LOADED.format(n=1))
    assert [w > 0 for w in png_widths(browser)] == [True]


def test_metrics_table_artifact_shows_accuracy(browser: webdriver.Chrome, rebuilt: Rebuilt,
                                               artifacts: dict[str, dict], request: pytest.FixtureRequest) -> None:
    accuracy = f"{100 * rebuilt.first['metrics']['argf']['accuracy']:.2f}"
    url = f"{ui_base(request)}/v2/artifacts/artifact/{artifacts['metrics-mosi']['id']}"
    open_page(browser, url, "document.querySelector('table td')")
    assert browser.execute_script(TABLE_CELL, "accuracy (%)", "argf") == accuracy


def test_flow_run_page_shows_named_task_runs_and_pipeline_logs(browser: webdriver.Chrome, rebuilt: Rebuilt,
                                                                shots: Path, request: pytest.FixtureRequest) -> None:
    fr = rebuilt.first["flow_run"]
    browser.set_window_size(1400, 1700)  # tall enough for the header, the run graph's box and ~15 log lines
    open_page(browser, f"{ui_base(request)}/v2/runs/flow-run/{fr['id']}",
              "document.body.innerText.includes('affectflow.train')")
    text = browser.execute_script("return document.body.innerText")
    for expected in (fr["name"], "dataset:mosi", "corpus:embedded-mosi", "stage ingest: start (cache key",
                     "train-ucln-text", "ucln epoch   1/2"):
        assert expected in text, expected
    screenshot(browser, shots / "prefect-ui-flow-run.png")
    # The Task Runs tab lists every stage under its own name.
    open_page(browser, f"{ui_base(request)}/v2/runs/flow-run/{fr['id']}?tab=TaskRuns",
              "document.body.innerText.includes('evaluate-argf-valid')")
    text = browser.execute_script("return document.body.innerText")
    for name in ("ingest-embedded", "train-ucln-text", "train-ucln-audio", "train-ucln-video", "train-argf",
                 "context-features-ucln-context", "evaluate-argf-valid", "report-mosi"):
        assert name in text, name
    screenshot(browser, shots / "prefect-ui-task-runs.png")
