"""The MLflow UI in headless Debian Chromium, on the server and pipeline run of mlflow_server.py.

Playwright drives /usr/bin/chromium (`make install` installs Debian's chromium package), so no
browser is downloaded. Screenshots go to test-artifacts/mlflow-ui/ at the repository root.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import mlflow
import pytest

from conftest import REPO

pytest_plugins = ["mlflow_server"]

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags Chromium keeps trying to reach Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "mlflow-ui"
# The UI renders slowly on a loaded 2-core CPU, so waits get 90 s instead of Playwright's default 30 s.
TIMEOUT_MS = 90_000
MODEL = "dcgan-mnist"


def _stop_leftover_chromium(profile: Path) -> None:
    """SIGKILL any process still running with this test's Chromium profile, found by its own command line."""
    marker = f"--user-data-dir={profile}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """A headless Chromium with a new, empty profile, closed at the end of the module."""
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}; run `make install`, or `apt-get install chromium` as root")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
    finally:
        playwright.stop()
        _stop_leftover_chromium(profile)


@pytest.fixture
def page(browser, request):
    """A new tab; its screenshot is saved under test-artifacts/mlflow-ui/<test name>.png, pass or fail."""
    tab = browser.new_page()
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{request.node.name}.png"
    tab.screenshot(path=str(path))
    print(f"screenshot: {path}")
    tab.close()


@pytest.fixture(scope="module")
def champion_run(server_pipeline):
    """The training run of the champion version, read through the server's API."""
    url = server_pipeline.server.url
    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    version = client.get_model_version_by_alias(MODEL, "champion")
    return client.get_run(version.run_id)


def _close_registry_announcement(page) -> None:
    """Close the dialog about the new Model Registry UI that MLflow 3.17 shows over the Models page of a new profile."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    dialog = page.get_by_role("dialog")
    try:
        dialog.get_by_role("button", name="Close").click(timeout=15_000)
    except PlaywrightTimeoutError:
        # Other MLflow versions may not show the dialog, and the checks below do not need it closed.
        return
    # Wait for the dialog and its grey backdrop (class du-bois-light-modal-mask in MLflow 3.17) to fade
    # out, so that the screenshot is not dimmed.
    dialog.wait_for(state="hidden")
    page.locator("[class*='modal-mask']").first.wait_for(state="hidden")


def _run_page(server_pipeline, run) -> str:
    return f"{server_pipeline.server.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def test_run_page_shows_fid(server_pipeline, champion_run, page):
    page.goto(_run_page(server_pipeline, champion_run))
    page.get_by_placeholder("Search metrics").fill("fid")

    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="fid", exact=True))
    row.scroll_into_view_if_needed()
    displayed_fid = float(row.get_by_role("cell").nth(1).inner_text())
    assert displayed_fid == pytest.approx(champion_run.data.metrics["fid"])
    assert displayed_fid > 0


def test_artifacts_view_renders_sample_grid(server_pipeline, champion_run, page):
    page.goto(_run_page(server_pipeline, champion_run))
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("samples", exact=True).click()
    page.get_by_text("samples.png", exact=True).click()

    # The preview is an <img> whose alt text is the artifact path.
    image = page.get_by_alt_text("samples/samples.png")
    image.wait_for()
    page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=image.element_handle())
    size = image.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    # An 8x8 grid of 32-pixel digits with 2-pixel padding.
    assert size == [8 * (32 + 2) + 2, 8 * (32 + 2) + 2]
    location = f"mlflow-artifacts:/{champion_run.info.experiment_id}/{champion_run.info.run_id}/artifacts/samples/samples.png"
    assert page.get_by_text(location).is_visible()


def test_models_page_shows_champion(server_pipeline, page):
    page.goto(f"{server_pipeline.server.url}/#/models")
    _close_registry_announcement(page)

    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=MODEL, exact=True))
    row.wait_for()
    # The "Aliased versions" cell shows a tag "@ champion" (title "champion") followed by ": Version 1".
    assert row.get_by_title("champion", exact=True).is_visible()
    assert "Version 1" in row.inner_text()
