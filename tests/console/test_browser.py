"""The console in headless Chromium, as a user drives it: sign in, browse
every page, watch an execution's log grow without a reload, cancel one.

Each page is saved as a screenshot under $STEPFORGE_SCREENSHOT_DIR, or
<repo>/build/screenshots.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console.console_steps import (
    create_producing_step,
    create_waiting_step,
    write_step_code,
)
from support.suite import SuiteUnderTest, running_suite
from support.waiting import eventually

from stepforge.services.console import ConsoleSettings, RunningConsole, start_console

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 20.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the browser tests need Debian's chromium at /usr/bin/chromium "
    "(apt-get install chromium chromium-driver)",
)


@dataclass
class World:
    suite: SuiteUnderTest
    console: RunningConsole
    produced_execution: str
    markers: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("console-browser")
    code = write_step_code(root / "code")
    (root / "markers").mkdir()
    with running_suite(root / "data") as suite:
        create_producing_step(suite.sdk, code)
        create_waiting_step(suite.sdk, code)
        produced = suite.sdk.run_pipeline("produces-pipeline", inputs={"size": 4096})
        console = start_console(ConsoleSettings(environment_url=suite.url, port=0))
        try:
            yield World(suite, console, produced["execution_id"], root / "markers")
        finally:
            console.stop()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    default = Path(__file__).resolve().parents[2] / "build" / "screenshots"
    folder = Path(os.environ.get("STEPFORGE_SCREENSHOT_DIR") or default)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1366,860",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def until(browser: Any, condition: Callable[[Any], object]) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S, poll_frequency=0.1).until(condition)


def sign_in(browser: Any, world: World, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(world.console.url + "/")
    until(browser, lambda page: page.find_elements(By.ID, "token"))
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()


def log_texts(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#log .text")]


def status_of(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, "#execution-status .badge")
    return str(found[0].text) if found else ""


def logged(world: World, execution_id: str, text: str) -> bool:
    lines = world.suite.sdk.get_pipeline_execution_logs(execution_id)
    return any(line["message"] == text for line in lines)


def test_a_wrong_token_is_refused_on_the_sign_in_page(
    browser: Any, world: World, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, world, "sf_this-is-not-a-token")

    error = until(
        browser, lambda page: page.find_elements(By.CSS_SELECTOR, ".notice-error")
    )
    assert "not accepted by the environment" in error[0].text
    save_page(browser, screenshots / "sign-in-refused.png")


def test_a_user_browses_steps_pipelines_and_executions(
    browser: Any, world: World, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, world, world.suite.token)
    until(browser, lambda page: page.find_elements(By.LINK_TEXT, "waits"))
    assert browser.current_url == world.console.url + "/steps"
    save_page(browser, screenshots / "steps.png")

    browser.find_element(By.LINK_TEXT, "waits").click()
    until(browser, lambda page: "Container configuration" in page.page_source)
    assert browser.find_element(By.TAG_NAME, "h1").text == "waits"
    assert (
        "marker"
        in browser.find_element(By.CSS_SELECTOR, "table[aria-label=inputs]").text
    )
    save_page(browser, screenshots / "step.png")

    browser.find_element(By.LINK_TEXT, "Pipelines").click()
    until(browser, lambda page: page.find_elements(By.LINK_TEXT, "produces-pipeline"))
    save_page(browser, screenshots / "pipelines.png")

    browser.find_element(By.LINK_TEXT, "produces-pipeline").click()
    until(browser, lambda page: "Latest executions" in page.page_source)
    assert (
        browser.find_element(By.LINK_TEXT, "produces")
        .get_attribute("href")
        .endswith("/steps/produces")
    )
    save_page(browser, screenshots / "pipeline.png")

    browser.find_element(By.LINK_TEXT, "Executions").click()
    short = world.produced_execution[:12]
    until(browser, lambda page: page.find_elements(By.LINK_TEXT, short))
    save_page(browser, screenshots / "executions.png")

    browser.find_element(By.LINK_TEXT, short).click()
    until(browser, lambda page: status_of(page) == "Succeeded")
    download = browser.find_element(By.LINK_TEXT, "Download")
    assert download.get_attribute("href").endswith(
        f"/executions/{world.produced_execution}/outputs/blob"
    )
    assert "producing 4096 bytes" in log_texts(browser)
    save_page(browser, screenshots / "execution.png")


def test_a_running_execution_shows_new_log_lines_without_a_reload(
    browser: Any, world: World, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    marker = world.markers / "live"
    execution = world.suite.sdk.run_pipeline(
        "waits-pipeline", inputs={"marker": str(marker), "label": "live"}, wait=False
    )["execution_id"]
    assert eventually(lambda: logged(world, execution, "waiting for live"))
    sign_in(browser, world, world.suite.token)
    until(browser, lambda page: page.find_elements(By.LINK_TEXT, "waits"))
    browser.get(f"{world.console.url}/executions/{execution}")
    until(browser, lambda page: "waiting for live" in log_texts(page))
    assert status_of(browser) == "Running"
    browser.execute_script("window.stepforgeTestPage = 'not reloaded';")

    marker.touch()

    until(browser, lambda page: "marker seen: live" in log_texts(page))
    assert browser.execute_script("return window.stepforgeTestPage") == "not reloaded"
    assert status_of(browser) == "Running"
    assert browser.find_elements(By.ID, "cancel-execution")
    save_page(browser, screenshots / "execution-running.png")

    Path(f"{marker}.done").touch()

    until(browser, lambda page: status_of(page) == "Succeeded")
    until(browser, lambda page: page.find_elements(By.LINK_TEXT, "Download"))
    assert not browser.find_elements(By.ID, "cancel-execution")
    save_page(browser, screenshots / "execution-succeeded.png")


def test_the_cancel_button_cancels_a_running_execution(
    browser: Any, world: World, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    marker = world.markers / "never"
    execution = world.suite.sdk.run_pipeline(
        "waits-pipeline", inputs={"marker": str(marker)}, wait=False
    )["execution_id"]
    assert eventually(lambda: logged(world, execution, "waiting for never"))
    sign_in(browser, world, world.suite.token)
    until(browser, lambda page: page.find_elements(By.LINK_TEXT, "waits"))
    browser.get(f"{world.console.url}/executions/{execution}")
    until(browser, lambda page: page.find_elements(By.ID, "cancel-execution"))

    browser.find_element(By.ID, "cancel-execution").click()
    until(browser, lambda page: _accept_alert(page))

    until(browser, lambda page: status_of(page) == "Cancelled")
    assert world.suite.sdk.get_pipeline_execution(execution)["status"] == "Cancelled"
    save_page(browser, screenshots / "execution-cancelled.png")


def save_page(browser: Any, path: Path) -> None:
    """A screenshot of the whole page, below the fold included."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _accept_alert(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert.accept()
    except NoAlertPresentException:
        return False
    return True
