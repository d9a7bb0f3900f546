"""Drives headless chromium over WebDriver through GET /docs (scripts/docs-browser.sh).
Usage: docs-browser.py BASE_URL API_KEY APP_ID WORK_DIR

Every request of the browser to anything but BASE_URL's host and port goes to a proxy of
this script's own, which refuses it, and its DNS resolves no name. The page's own requests
are read from the browser's network events (the proxy also sees the browser's background
requests, which are not the page's). Prints `docs-browser: ok` or the failures."""

import functools
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

BASE, KEY, APP, WORK = sys.argv[1:5]
SERVICE = urllib.parse.urlsplit(BASE).netloc
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element key


class Failure(Exception):
    pass


class Refuser(http.server.BaseHTTPRequestHandler):
    """The proxy for every other host: notes the host and refuses."""

    hosts = set()

    def refuse(self):
        host = self.path if self.command == "CONNECT" else urllib.parse.urlsplit(self.path).netloc
        Refuser.hosts.add(host)
        self.close_connection = True
        try:
            self.send_error(403, "no other host from the docs test")
        except OSError:
            pass

    do_CONNECT = do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = refuse

    def log_message(self, *args):
        pass


def wd(method, url, body=None):
    """One WebDriver command; its `value`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response).get("value")
    except urllib.error.HTTPError as error:
        raise Failure(f"{method} {url}: {error.code} {error.read()[:500]!r}") from None


class Browser:
    """Debian's chromium through its chromedriver (the same version, one source package)."""

    def __init__(self, proxy_port):
        with socket.create_server(("127.0.0.1", 0)) as s:
            port = s.getsockname()[1]
        self.driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url, self.session = f"http://127.0.0.1:{port}", None
        self.until_true("chromedriver ready", lambda: wd("GET", self.url + "/status")["ready"])
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage",  # a container's /dev/shm is often too small
            f"--user-data-dir={WORK}/profile",
            # Everything but the service goes to the refusing proxy, loopback too ...
            f"--proxy-server=http://127.0.0.1:{proxy_port}",
            f"--proxy-bypass-list=<-loopback>;{SERVICE}",
            # ... and no name resolves, should a request get past it.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }
        created = wd("POST", self.url + "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = f"{self.url}/session/{created['sessionId']}"
        # Finding an element waits for it up to this long (a modal opening, a re-render).
        self.call("POST", "/timeouts", {"implicit": 5000})

    def close(self):
        try:
            if self.session:
                wd("DELETE", self.session)
        finally:
            self.driver.terminate()
            self.driver.wait(10)

    def call(self, method, path, body=None):
        return wd(method, self.session + path, body)

    def script(self, source, *args):
        return self.call("POST", "/execute/sync", {"script": source, "args": list(args)})

    @staticmethod
    def until_true(what, probe, seconds=20):
        """The first truthy value of `probe()`, polled; a probe that raises counts as false."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if value := probe():
                    return value
            except (OSError, Failure):
                pass
            time.sleep(0.2)
        raise Failure(f"not within {seconds} s: {what}")

    def until(self, what, source, *args):  # `source`: a function body run in the page
        return self.until_true(what, lambda: self.script(source, *args))

    def find(self, css):
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.call("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css, text):
        self.call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def log(self, kind):
        return self.call("POST", "/se/log", {"type": kind})


def logs_operation():
    """The logs GET operation of the live document: its DOM id and its parameters' names."""
    with urllib.request.urlopen(BASE + "/openapi.json", timeout=10) as response:
        doc = json.load(response)
    operation = doc["paths"]["/v1/apps/{app_id}/logs"]["get"]

    def resolve(item):  # a `$ref` is `#/components/...`
        while "$ref" in item:
            item = functools.reduce(dict.get, item["$ref"][2:].split("/"), doc)
        return item

    names = [resolve(p)["name"] for p in operation["parameters"]]
    return f"operations-{operation['tags'][0]}-{operation['operationId']}", names


SHOWN_PARAMETERS = """
const op = document.getElementById(arguments[0]);
if (!op || !op.classList.contains('is-open')) return null;
const rows = Array.from(op.querySelectorAll('tr[data-param-name]'));
return rows.filter(r => r.getClientRects().length > 0).map(r => r.dataset.paramName);
"""

# The status and the body of the live answer, once there is one.
ANSWER = """
const row = document.querySelector('#' + arguments[0] + ' .live-responses-table tr.response');
const cell = row && row.querySelector('.response-col_status');
return cell && [cell.textContent.trim(), row.querySelector('.response-col_description').textContent];
"""


def run(browser, failures):
    op, names = logs_operation()
    browser.call("POST", "/url", {"url": BASE + "/docs"})
    # At load, without a click: the operation open, each parameter's row shown.
    shown = browser.until(f"#{op} open with its parameters shown", SHOWN_PARAMETERS, op)
    if missing := [n for n in names if n not in shown]:
        failures.append(f"parameters not shown at load: {missing} (shown: {shown})")
    print(f"docs-browser: {op} open at load with {shown}")

    # Authorize with the API key (the document's Bearer scheme), as a reader would.
    browser.click(".auth-wrapper button.authorize")
    browser.type(".modal-ux input", KEY)
    browser.click(".modal-ux .auth-btn-wrapper button.authorize")
    browser.click(".modal-ux .auth-btn-wrapper button.btn-done")
    # Try it out: the app, Execute, and the live answer.
    browser.click(f"#{op} button.try-out__btn")
    browser.type(f"#{op} tr[data-param-name='app_id'] input", APP)
    browser.click(f"#{op} button.execute")
    status, body = browser.until("an answer to the call made from the page", ANSWER, op)
    print(f"docs-browser: the call from the page got {status}: {body[:100]!r}")
    if status != "200" or f'"app_id": "{APP}"' not in body:
        failures.append(f"the call from the page got {status}, not 200 with {APP}'s logs")


def page_requests(entries):
    """The URLs the page asked for: all that its document loaded, its frames' requests and
    any navigation after it (the tab's start page before it is not the page's)."""
    frame = loader = None
    for entry in entries:
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        params = message["params"]
        url = params["request"]["url"]
        if loader is None:
            if params.get("type") != "Document" or url != BASE + "/docs":
                continue
            frame, loader = params["frameId"], params["loaderId"]
        if params["loaderId"] == loader or params["frameId"] != frame or params.get("type") == "Document":
            yield url


def own(url):
    """Whether `url` is the service's, or inline data."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("data", "blob") or (parts.scheme, parts.netloc) == ("http", SERVICE)


def check_logs(browser, failures):
    # A Content-Security-Policy violation, or a file that did not load, is an error there.
    for entry in browser.log("browser"):
        if entry["level"] == "SEVERE":
            failures.append(f"console: {entry['message']}")
    if not (asked := list(page_requests(browser.log("performance")))):
        failures.append("no request of the page was seen")
    foreign = [url for url in asked if not own(url)]
    failures.extend(f"the page asked another host: {url}" for url in foreign)
    print(f"docs-browser: the page made {len(asked)} requests, {len(foreign)} to another host; "
          f"the proxy refused requests to {', '.join(sorted(Refuser.hosts)) or 'none'}")


def main():
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuser)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    failures, browser = [], None
    try:
        browser = Browser(proxy.server_address[1])
        for step in (run, check_logs):
            try:
                step(browser, failures)
            except Failure as failure:
                failures.append(str(failure))
    except Failure as failure:
        failures.append(str(failure))
    finally:
        if browser:
            browser.close()
        proxy.shutdown()
    for failure in failures:
        print(f"docs-browser: FAILED: {failure}", file=sys.stderr)
    print(f"docs-browser: {len(failures)} failed" if failures else "docs-browser: ok")
    return 1 if failures else 0


sys.exit(main())
