"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium; no browser download), against the live gateway of tests/gateway: the
ASGI app under uvicorn and a Celery worker on the test database, the fake upstream in this
process. Screenshots of the pages go to tests/browser/screenshots/ (git-ignored)."""

from pathlib import Path

import pytest
from django.test import Client
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.fake_upstream import fake_upstream, fake_upstream_server  # noqa: F401  (fixtures)
from tests.gateway.conftest import gateway, live_gateway  # noqa: F401  (fixtures)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).parent / "screenshots"
DESKTOP, PHONE = (1280, 900), (390, 844)


class Page:
    """The browser on the live server, with the few moves the scenarios need."""

    def __init__(self, driver: webdriver.Chrome, base_url: str):
        self.driver = driver
        self.url = base_url

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, timeout: float = 10):
        return WebDriverWait(self.driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def wait_text(self, css: str, text: str, timeout: float = 10):
        WebDriverWait(self.driver, timeout).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        return self.find(css)

    def wait_until(self, check, timeout: float = 10):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _: check())

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.url)

    @property
    def text(self) -> str:
        return self.find("body").text

    def log_in_as(self, user) -> None:
        """A session cookie made like Django's test client does (the password hashers of
        the tests and of the live server differ)."""
        client = Client()
        client.force_login(user)
        self.open("/healthz")
        self.driver.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"})

    def screenshot(self, name: str, *, phone: bool = False) -> Path:
        """The whole page as a person sees it, at 1280 px or on a phone."""
        width, height = PHONE if phone else DESKTOP
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        full = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(max(full, height), 4000)})
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}{'-phone' if phone else ''}.png"
        self.driver.save_screenshot(str(path))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path


@pytest.fixture(scope="session")
def chromium():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for CSP violations
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def page(chromium, gateway):
    """A fresh browser session on the live server for each test."""
    chromium.get(gateway.url + "/healthz")
    chromium.delete_all_cookies()
    chromium.execute_script("window.sessionStorage.clear(); window.localStorage.clear();")
    chromium.set_window_size(*DESKTOP)
    return Page(chromium, gateway.url)
