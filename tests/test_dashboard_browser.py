"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (named explicitly, so Selenium Manager never downloads anything), against
a real ``llmledger`` service on a seeded ledger. Each page loads with no console error; the
overview's totals and its chart's data are the API's numbers, and change with the filters as
the API's do; the run tree opens by mouse and keyboard; the runs list pages.

Screenshots of every page (light, dark, phone width) go to the test's tmp output; with
``LLMLEDGER_SCREENSHOTS=docs/dashboard`` they are also written there (docs/dashboard.md):

    LLMLEDGER_SCREENSHOTS=docs/dashboard .venv/bin/pytest tests/test_dashboard_browser.py

Skipped with the reason when chromium or chromedriver is missing, except under ``CI=true``
(``.ci/run`` installs them), where that fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard_plan_seed import NOW, seed_budgets, seed_worked_example
from dashboard_seed import SMALL_TASKS, seed
from server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_WAIT_S = 20


def _browser_or_skip() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + "; CI must run the browser tests (.ci/run installs them)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The screenshots' directory; copied to $LLMLEDGER_SCREENSHOTS afterwards when set."""
    out = tmp_path_factory.mktemp("screenshots")
    yield out
    target = os.environ.get("LLMLEDGER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in sorted(out.glob("*.png")):
            shutil.copy(png, Path(target) / png.name)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real service on a seeded SQLite ledger: (its URL, the workflow run's id)."""
    _browser_or_skip()
    where = tmp_path_factory.mktemp("ledger")
    db = f"sqlite:///{where / 'ledger.db'}"
    workflow = seed(db)
    with ServerProcess(db, log=where / "server.log") as server:
        yield server.url, workflow


@pytest.fixture(scope="module")
def plan_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real service on a ledger with budgets and a status history: its URL."""
    _browser_or_skip()
    where = tmp_path_factory.mktemp("plan-ledger")
    db = f"sqlite:///{where / 'ledger.db'}"
    seed_budgets(db)
    seed_worked_example(db)
    with ServerProcess(db, log=where / "server.log") as server:
        yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(_WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _wait(driver: Any, script: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, _WAIT_S).until(lambda d: d.execute_script(script))


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    _wait(driver, "return document.readyState === 'complete'")
    if driver.execute_script("return !!document.querySelector('[data-fragment]')"):
        _wait(driver, "return !!document.getElementById('top-loaded')")
    if driver.execute_script("return !!document.getElementById('cost-chart')"):
        _wait(driver, "return window.Chart && !!Chart.getChart('cost-chart')")


def _shot(driver: Any, shots: Path, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")
    driver.set_window_size(max(width, 390), min(max(height + 160, 600), 4000))
    driver.save_screenshot(str(shots / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def _api(base: str, path: str, params: Any = None) -> Any:
    response = httpx.get(base + path, params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def _shown_totals(driver: Any) -> dict[str, float | None]:
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('[data-total]')]"
        ".map(e => [e.dataset.total, e.dataset.value])"
    )
    return {name: (None if value == "" else float(value)) for name, value in pairs}


def _chart(driver: Any) -> dict[str, Any]:
    data: dict[str, Any] = driver.execute_script(
        "const d = Chart.getChart('cost-chart').data;"
        "return {labels: d.labels, datasets: d.datasets.map(s => ({label: s.label, data: s.data}))}"
    )
    return data


def _assert_overview_is_the_api(driver: Any, base: str, params: dict[str, Any]) -> float:
    daily = _api(base, "/v1/reports/daily", {"since": "30d", "tz": "UTC", **params})
    shown = _shown_totals(driver)
    for name in ("cost_usd", "total_tokens", "calls", "unpriced_calls"):
        assert shown[name] == daily["totals"][name], name
    chart = _chart(driver)
    assert chart["labels"] == [row["period"] for row in daily["rows"]]
    models = {b["model"] for row in daily["rows"] for b in row["breakdown"]}
    assert {None if d["label"] == "(no model)" else d["label"] for d in chart["datasets"]} == models
    for dataset in chart["datasets"]:
        model = None if dataset["label"] == "(no model)" else dataset["label"]
        expected = []
        for row in daily["rows"]:
            parts = [b["cost_usd"] for b in row["breakdown"] if b["model"] == model]
            expected.append(parts[0] if parts else None)
        assert dataset["data"] == expected, model
    calls: float = daily["totals"]["calls"]
    return calls


def test_each_page_loads_without_console_errors(
    browser: Any, service: tuple[str, str], shots: Path
) -> None:
    base, workflow = service
    browser.get_log("browser")  # start clean
    pages = {
        "overview": "/?tz=UTC",
        "runs": "/runs",
        "run": f"/runs/{workflow}",
        "models": "/models?tz=UTC",
        "top": "/overview/top?tz=UTC",
    }
    for name, path in pages.items():
        _open(browser, base + path)
        assert browser.find_element("css selector", "h1").text, name
        assert _errors(browser) == [], name
        _shot(browser, shots, name)
    # Dark mode and a phone's width.
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    _open(browser, base + "/?tz=UTC")
    background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 20, 23)"
    _shot(browser, shots, "overview-dark")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.set_window_size(390, 844)
    _open(browser, base + "/?tz=UTC")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0  # nothing wider than a phone's screen
    browser.save_screenshot(str(shots / "overview-phone.png"))
    browser.set_window_size(1280, 1000)
    assert _errors(browser) == []
    assert {p.name for p in shots.glob("*.png")} >= {f"{n}.png" for n in pages}


def test_overview_totals_and_chart_are_the_apis(browser: Any, service: tuple[str, str]) -> None:
    base, _ = service
    _open(browser, base + "/?tz=UTC")
    calls = _assert_overview_is_the_api(browser, base, {})
    assert calls == 4 + 10 + 3 + SMALL_TASKS
    # Unpriced calls link to the models that have them.
    browser.find_element("css selector", '[data-total="unpriced_calls"] a').click()
    _wait(browser, "return location.pathname === '/models' && location.hash === '#unpriced'")
    assert "no-such-model-x" in browser.find_element("id", "unpriced").text


def test_filters_change_the_numbers_as_the_api(browser: Any, service: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By

    base, _ = service
    _open(browser, base + "/?tz=UTC")
    everything = _shown_totals(browser)["calls"]
    field = browser.find_element(By.CSS_SELECTOR, 'form.filters input[name="model"]')
    field.send_keys("gpt-4o")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    _wait(browser, "return location.search.includes('model=gpt-4o')")
    _open(browser, browser.current_url)
    assert "since=" not in browser.current_url  # blank fields are left out of the URL
    calls = _assert_overview_is_the_api(browser, base, {"model": "gpt-4o"})
    assert everything is not None
    assert 0 < calls < everything
    # The custom range's dates appear only when "Custom" is picked.
    dates = browser.find_element(By.CSS_SELECTOR, "[data-custom-range]")
    assert not dates.is_displayed()
    browser.find_element(By.CSS_SELECTOR, 'input[name="period"][value="custom"]').click()
    assert dates.is_displayed()
    assert _errors(browser) == []


def test_the_run_tree_opens_by_mouse_and_keyboard(browser: Any, service: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, workflow = service
    document = _api(base, f"/v1/runs/{workflow}")
    task = document["run"]["children"][0]
    _open(browser, f"{base}/runs/{workflow}")
    node = browser.find_element(By.CSS_SELECTOR, f'li[data-run="{task["id"]}"] > details')
    first_attempt = task["children"][0]["id"]
    attempt = browser.find_element(By.CSS_SELECTOR, f'li[data-run="{first_attempt}"]')
    assert node.get_attribute("open") is None
    assert not attempt.is_displayed()
    node.find_element(By.CSS_SELECTOR, "summary .kind").click()
    assert node.get_attribute("open") is not None
    assert attempt.is_displayed()
    inner = attempt.find_element(By.CSS_SELECTOR, "details")
    summary = inner.find_element(By.CSS_SELECTOR, "summary")
    browser.execute_script("arguments[0].focus()", summary)
    summary.send_keys(Keys.ENTER)
    assert inner.get_attribute("open") is not None
    own = inner.find_element(By.CSS_SELECTOR, 'tr[data-part="own"]').text
    assert "failed" in attempt.text
    assert str(task["children"][0]["own"]["calls"]) in own
    assert _errors(browser) == []


def test_the_runs_list_pages(browser: Any, service: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By

    base, _ = service
    listed = [r["id"] for r in _api(base, "/v1/runs", {"limit": 100})["runs"]]
    _open(browser, base + "/runs")

    def ids() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        return [r.get_attribute("data-run") for r in rows]

    first = ids()
    assert first == listed[:25]
    browser.find_element(By.CSS_SELECTOR, 'a[rel="next"]').click()
    _wait(browser, "return location.search.includes('page=2')")
    assert ids() == listed[25:]
    assert not browser.find_elements(By.CSS_SELECTOR, 'a[rel="next"]')
    browser.find_element(By.CSS_SELECTOR, 'a[rel="prev"]').click()
    _wait(browser, "return location.search.includes('page=1')")
    assert ids() == first
    assert _errors(browser) == []


def test_budgets_and_forecast_pages_load(browser: Any, plan_service: str, shots: Path) -> None:
    base = plan_service
    browser.get_log("browser")  # start clean
    for name, path in {"budgets": "/budgets", "forecast": f"/forecast?at={NOW}"}.items():
        _open(browser, base + path)
        assert browser.find_element("css selector", "h1").text == name.capitalize()
        assert _errors(browser) == [], name
        _shot(browser, shots, name)
    budgets = {b["name"]: b for b in _api(base, "/v1/budgets")["budgets"]}
    _open(browser, base + "/budgets")
    spent = browser.execute_script(
        "return document.querySelector('[data-budget=daily][data-field=spent_usd]').dataset.value"
    )
    assert float(spent) == budgets["daily"]["spent_usd"]
