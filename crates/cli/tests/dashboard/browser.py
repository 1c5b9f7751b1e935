"""Drives the dashboard in a real headless Chromium (Selenium + Debian's chromedriver).

Run by crates/cli/tests/dashboard.rs against a running `flotilla up` that has two services
(`users`, `orders`, TTL checks, passing), a route `/users` on the gateway, a consumer group `g`
with two dead letters, and a `place-order` saga that ends compensated. While it runs, a background thread keeps traffic flowing (heartbeats,
gateway requests, bus publishes, event-store appends) so the overview's charts have data.

Checks: every page loads with no console error and no failed request; the overview lists the
services; `users` turns critical on the services page without a reload once its heartbeats
stop; a dead letter can be inspected and replayed and the DLQ count drops; the compensated
saga's timeline shows its compensation; a page can be
reached with the keyboard alone. Saves a screenshot of every page into --shots (and of the
overview in dark mode and the services page in a narrow window). Exits non-zero, naming the failed check, otherwise.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PAGES = ["overview", "services", "gateway", "bus", "events", "sagas"]


def call(method, url, body=None, content_type="application/json"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": content_type})
    with urllib.request.urlopen(req, timeout=10) as res:
        raw = res.read()
        return json.loads(raw) if raw else None


class Traffic(threading.Thread):
    """Heartbeats for the services still alive, and a little traffic for every chart."""

    def __init__(self, args):
        super().__init__(daemon=True)
        self.args = args
        self.alive = {"users", "orders"}
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            try:
                self.tick(n)
            except OSError as e:
                print(f"traffic: {e}", file=sys.stderr)
            n += 1
            self.stop.wait(0.5)

    def tick(self, n):
        api = self.args.api
        for name in sorted(self.alive):
            call("PUT", f"{api}/api/v1/registry/services/{name}/instances/{name}-1/heartbeat")
        for _ in range(3):
            try:
                urllib.request.urlopen(f"{self.args.gateway}/users/{n}", timeout=5).read()
            except OSError:
                pass  # the charts show errors too
        event = {"specversion": "1.0", "id": f"traffic-{n}", "source": "/browser-test",
                 "type": "test.tick", "data": {"n": n}}
        call("POST", f"{api}/api/v1/bus/topics/ticks/events", event, "application/cloudevents+json")
        call("POST", f"{api}/api/v1/streams/tick-{n % 4}", {"events": [{"type": "Ticked", "data": {"n": n}}]})


def chromium(args):
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                 "--disable-extensions", "--disable-component-update"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=args.driver), options=options)


class Check:
    def __init__(self, driver, shots):
        self.driver = driver
        self.shots = shots
        self.problems = []
        self.urls = {}  # request id -> URL, to name a failed request
        self.answered = set()  # request ids that received a response head below 400

    def collect(self, where):
        """Console errors and failed requests since the last call."""
        for entry in self.driver.get_log("browser"):
            if entry["level"] == "SEVERE":
                self.problems.append(f"{where}: console error: {entry['message']}")
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            params = msg.get("params", {})
            if msg["method"] == "Network.requestWillBeSent":
                self.urls[params["requestId"]] = f"{params['request']['method']} {params['request']['url']}"
            elif msg["method"] == "Network.loadingFailed":
                # Chromium reports a fetch answered 204 as "loading failed: ERR_ABORTED" after
                # its response arrived (there is no body to load); the page got its answer.
                if params["requestId"] in self.answered and params.get("errorText") == "net::ERR_ABORTED":
                    continue
                url = self.urls.get(params["requestId"], "?")
                self.problems.append(f"{where}: {url} failed: {params.get('errorText')} {params.get('blockedReason', '')}")
            elif msg["method"] == "Network.responseReceived":
                r = params["response"]
                if r["status"] >= 400:
                    self.problems.append(f"{where}: {r['status']} for {r['url']}")
                else:
                    self.answered.add(params["requestId"])

    def wait(self, what, condition, timeout=20):
        try:
            # The pages redraw parts of themselves every poll: an element found just before a
            # redraw goes stale, which only means "look again".
            ignored = (StaleElementReferenceException, NoSuchElementException)
            wait = WebDriverWait(self.driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored)
            return wait.until(lambda d: condition(d))
        except Exception as e:
            raise AssertionError(f"never happened within {timeout} s: {what}") from e

    def main_text(self):
        return self.driver.find_element(By.ID, "main").text

    def open(self, page):
        self.driver.find_element(By.CSS_SELECTOR, f'nav a[data-page="{page}"]').click()
        self.wait(f"the {page} page shows", lambda d: self.driver.find_element(By.CSS_SELECTOR, f'nav a[data-page="{page}"]').get_attribute("aria-current") == "page")
        self.wait(f"the {page} page has its data", lambda d: d.find_element(By.ID, "main").get_attribute("aria-busy") is None)

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(self.shots, f"{name}.png"))


def dlq_rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "tr[data-dead-letter]")


def saga_status(driver):
    cells = driver.find_elements(By.CSS_SELECTOR, "tr[data-saga] .badge")
    return cells[0].text if cells else None


def instance_status(driver, instance):
    cells = driver.find_elements(By.CSS_SELECTOR, f'tr[data-instance="{instance}"] td.status')
    return cells[0].text if cells else None


def run(args, check, traffic):
    d = check.driver
    d.get(f"{args.api}/ui/")
    # Set once: a reload would drop it, which is how "without a reload" is checked.
    d.execute_script("window.__sameDocument = true;")
    check.wait("the overview lists both services", lambda _: "users" in check.main_text() and "orders" in check.main_text())
    check.collect("overview")

    check.open("services")
    check.wait("users shows passing", lambda _: instance_status(d, "users-1") == "passing")
    check.shot("services")
    check.collect("services")

    check.open("gateway")
    check.wait("the gateway page shows the users route with traffic", lambda _: "users" in check.main_text() and "/s" in check.main_text())
    check.shot("gateway")
    check.collect("gateway")

    check.open("events")
    d.find_element(By.CSS_SELECTOR, 'nav[aria-label="Streams"] a').click()
    check.wait("a stream's events show as JSON", lambda _: d.find_elements(By.CSS_SELECTOR, "article.event pre.json"))
    check.shot("events")
    check.collect("events")

    check.open("sagas")
    check.wait("the saga is listed as compensated", lambda _: saga_status(d) == "compensated", timeout=30)
    saga = d.find_element(By.CSS_SELECTOR, "tr[data-saga]").get_attribute("data-saga")
    d.find_element(By.CSS_SELECTOR, "tr[data-saga] a").click()
    check.wait("its timeline shows the compensation", lambda _: d.find_elements(By.CSS_SELECTOR, 'li[data-type="CompensationSucceeded"]'))
    check.wait("its steps show reserve compensated", lambda _: "succeeded" in d.find_element(By.CSS_SELECTOR, 'tr[data-step="reserve"]').text)
    trace_id = call("GET", f"{args.api}/api/v1/sagas/{saga}")["trace_id"]
    check.wait(f"its trace id {trace_id} shows", lambda _: d.find_element(By.CSS_SELECTOR, "p[data-trace-id] code").text == trace_id)
    check.shot("sagas")
    check.collect("sagas")

    check.open("bus")
    before = len(check.wait("the DLQ lists a dead letter", lambda _: dlq_rows(d)))
    row = dlq_rows(d)[0]
    letter = row.get_attribute("data-dead-letter")
    row.find_element(By.XPATH, ".//button[text()='Inspect']").click()
    check.wait("the inspected dead letter shows its event", lambda _: '"id": "poison-1"' in d.find_element(By.CSS_SELECTOR, "tr.detail pre.json").text)
    check.shot("bus")
    d.find_element(By.CSS_SELECTOR, f'tr[data-dead-letter="{letter}"]').find_element(By.XPATH, ".//button[text()='Replay']").click()
    check.wait("the confirmation dialog opens", lambda _: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    d.find_element(By.ID, "confirm-ok").click()
    check.wait("the DLQ count drops", lambda _: len(dlq_rows(d)) == before - 1)
    left = call("GET", f"{args.api}/api/v1/bus/dlq")["dead_letters"]
    assert len(left) == before - 1, f"the API still lists {len(left)} dead letters"
    check.collect("bus")

    check.open("services")
    traffic.alive.discard("users")
    check.wait("users turns critical without a reload", lambda _: instance_status(d, "users-1") == "critical", timeout=30)
    assert instance_status(d, "orders-1") == "passing", "orders should still be passing"
    assert d.execute_script("return window.__sameDocument === true"), "the page was reloaded"
    check.collect("services (critical)")

    check.open("overview")
    time.sleep(args.history)  # let the charts gather a few more points for the screenshot
    check.shot("overview")
    check.collect("overview (end)")
    keyboard(check)
    looks(check)


def token(args, check):
    """Writes against a control plane with a token: the first one answers 401, the page asks
    for the token once, retries with it and keeps it for the next write."""
    d = check.driver
    d.get(f"{args.api}/ui/#/bus")
    before = len(check.wait("the DLQ lists the dead letters", lambda _: len(dlq_rows(d)) >= 2 and dlq_rows(d)))
    dlq_rows(d)[0].find_element(By.XPATH, ".//button[text()='Replay']").click()
    check.wait("the confirmation dialog opens", lambda _: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    d.find_element(By.ID, "confirm-ok").click()
    check.wait("the 401 opens the token dialog", lambda _: d.find_element(By.ID, "token").get_attribute("open") is not None)
    d.find_element(By.ID, "token-input").send_keys(args.token)
    check.shot("token")
    d.find_element(By.CSS_SELECTOR, '#token button[value="ok"]').click()
    check.wait("the replay goes through with the token", lambda _: len(dlq_rows(d)) == before - 1)
    kept = d.execute_script("return sessionStorage.getItem('flotilla.token')")
    assert kept == args.token, f"the tab keeps {kept!r}, not the token"
    d.find_element(By.XPATH, "//button[text()='Purge DLQ']").click()
    check.wait("the confirmation dialog opens again", lambda _: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    d.find_element(By.ID, "confirm-ok").click()
    check.wait("the purge empties the DLQ", lambda _: not dlq_rows(d))
    assert d.find_element(By.ID, "token").get_attribute("open") is None, "the token was asked twice"
    check.collect("token")
    # Exactly the first write was refused (a console error and a 401 response); nothing else.
    refused = [p for p in check.problems if "/replay" in p and "401" in p]
    assert len(refused) == 2, f"expected one refused replay, got: {check.problems}"
    check.problems = [p for p in check.problems if p not in refused]


def keyboard(check):
    """The pages are reachable with the keyboard alone: Tab to a page's link, Enter."""
    d = check.driver
    d.find_element(By.TAG_NAME, "body").click()
    for _ in range(20):
        ActionChains(d).send_keys(Keys.TAB).perform()
        if d.switch_to.active_element.get_attribute("data-page") == "bus":
            break
    else:
        raise AssertionError("Tab never reached the Bus link")
    ActionChains(d).send_keys(Keys.ENTER).perform()
    check.wait("Enter on the Bus link opens the bus page", lambda _: d.find_element(By.TAG_NAME, "h1").text == "Bus")
    check.collect("keyboard")


def looks(check):
    """The same pages dark and in a narrow window, for a person to look at."""
    d = check.driver
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    check.open("overview")
    check.shot("overview-dark")
    d.set_window_size(420, 900)
    check.open("services")
    check.shot("services-narrow")
    check.collect("dark and narrow")


def main():
    p = argparse.ArgumentParser()
    for name in ["api", "gateway", "chromium", "driver", "shots"]:
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--history", type=float, default=4)
    p.add_argument("--token", help="the control plane's token: check the token dialog instead of the tour")
    args = p.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    traffic = Traffic(args)
    if not args.token:
        traffic.start()
    driver = chromium(args)
    check = Check(driver, args.shots)
    try:
        if args.token:
            token(args, check)
        else:
            run(args, check, traffic)
    except AssertionError as e:
        check.shot("failure")
        print(f"FAILED: {e}", file=sys.stderr)
        print(f"page text:\n{check.main_text()}", file=sys.stderr)
        return 1
    finally:
        traffic.stop.set()
        driver.quit()
    if check.problems:
        print("FAILED: the pages logged problems:\n" + "\n".join(check.problems), file=sys.stderr)
        return 1
    print(f"dashboard browser checks passed; screenshots in {args.shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
