"""The chat widget end to end: headless Chromium against the real running service.

One uvicorn process (the project's built model and index under var/) serves the API,
/widget.js and the demo page. Two tiny "host sites" on other loopback ports embed the
widget with its one script tag: one origin is on the service's allow-list, the other is
not. Screenshots go to var/screenshots/ (git-ignored) for a human to look at.

Run: HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/test_widget_browser.py -q
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian chromium at /usr/bin/chromium (make system-deps)", allow_module_level=True
    )

from playwright.sync_api import (  # noqa: E402 (only after the skips above)
    Browser,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    sync_playwright,
)

from bench.server import free_port, uvicorn_process  # noqa: E402
from tests.apps import wait_ready  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 740}
SITE_KEY = "demo-site-key"

ZH_QUESTION = "北京独角兽企业有多少家？"
EN_QUESTION = "How many unicorn companies does Beijing have?"
NO_ANSWER_QUESTION = "上海2024年的研发经费投入强度是多少？"
XSS_QUESTION = "<img src=x onerror=alert(1)> <script>alert(2)</script> 北京独角兽企业有多少家？"
ANSWER_SENTENCE = "目前，北京独角兽企业数量115家，居全国首位、全球前列。"

W = "policy-qa-widget"  # Playwright's CSS engine pierces the open shadow root.
ROOT_JS = "document.querySelector('policy-qa-widget').shadowRoot"
# A reply has arrived: more assistant messages than before, and no loading indicator.
REPLIED_JS = f"""(n) => {{
  const root = {ROOT_JS};
  return !root.querySelector('.msg.loading') && root.querySelectorAll('.msg.bot').length > n;
}}"""

HOSTILE_CSS = """
  /* A careless host stylesheet. ('*' itself would hide <html>, and with it the page.) */
  body * { display: none !important; color: red !important; font-size: 40px !important;
           line-height: 0.2 !important; box-sizing: content-box !important; }
  button, textarea, mark, div, p, span { visibility: hidden !important; }
  .launcher, .panel, .msg, mark { background: lime !important; }
  #host-content, #host-content * { display: block !important; visibility: visible !important; }
"""

# --- the host sites -------------------------------------------------------------------


def host_page(service: str, *, lang: str = "zh", title: str = "", extra_head: str = "") -> str:
    tag = (
        f'<script src="{service}/widget.js" data-site-key="{SITE_KEY}" data-lang="{lang}"'
        f' data-title="{title}" data-color="#b22222" defer></script>'
    )
    return f"""<!doctype html>
<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>Host site</title>{extra_head}</head>
<body><div id="host-content"><h1>A host site</h1><p>Some page text.</p>
<a href="#top">A link</a> <button id="host-button">Host button</button>
<div class="panel" id="probe-panel">host .panel</div><mark id="probe-mark">host mark</mark>
</div>
{tag}
</body></html>"""


class _HostHandler(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve_host_site(pages: dict[str, str]) -> ThreadingHTTPServer:
    handler = type("HostHandler", (_HostHandler,), {"pages": pages})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class Sites:
    service: str  # the policy-qa service (API, /widget.js, demo page at /)
    host: str  # a host site on the allow-list
    foreign: str  # a host site that is not


def _post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 (loopback URL built by the test)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="session")
def widget_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """The real service in a subprocess, plus the two host sites."""
    pages: dict[str, str] = {}
    host = _serve_host_site(pages)
    foreign = _serve_host_site(pages)
    host_origin = f"http://127.0.0.1:{host.server_address[1]}"
    foreign_origin = f"http://127.0.0.1:{foreign.server_address[1]}"
    port = free_port()
    service = f"http://127.0.0.1:{port}"
    pages.update(
        {
            "/zh.html": host_page(service, lang="zh"),
            "/en.html": host_page(service, lang="en", title="Policy Q&A"),
            "/hostile.html": host_page(
                service, lang="zh", extra_head=f"<style>{HOSTILE_CSS}</style>"
            ),
            "/twice.html": host_page(service, lang="en").replace(
                "</body>", f'<script src="{service}/widget.js" defer></script></body>'
            ),
            "/bare.html": host_page(service).split("<script src=")[0] + "</body></html>",
        }
    )
    env = {
        "POLICY_QA_DATA_DIR": str(PROJECT_ROOT / "var"),
        "POLICY_QA_CORS_ORIGINS": json.dumps([host_origin]),
        "POLICY_QA_RATE_LIMIT_PER_MINUTE": "1000",
        "POLICY_QA_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path_factory.mktemp("service") / "uvicorn.log"
    try:
        with uvicorn_process(
            "service.app:create_app", port=port, env=env, log_path=log_path
        ) as process:
            wait_ready(service, process, log_path)
            yield Sites(service=service, host=host_origin, foreign=foreign_origin)
    finally:
        for server in (host, foreign):
            server.shutdown()
            server.server_close()


# --- the browser ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless (``playwright install`` cannot download here)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Tab:
    page: Page
    errors: list[str]
    dialogs: list[str]
    console: list[str]


@pytest.fixture
def open_tab(chromium: Browser) -> Iterator[Callable[..., Tab]]:
    """Open a page in a fresh context; fails the test on any uncaught page error."""
    tabs: list[Tab] = []

    def _open(url: str, viewport: ViewportSize = DESKTOP) -> Tab:
        context = chromium.new_context(viewport=viewport, locale="en-US")
        page = context.new_page()
        page.set_default_timeout(15_000)
        tab = Tab(page=page, errors=[], dialogs=[], console=[])
        page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        page.on("console", lambda msg: tab.console.append(f"{msg.type}: {msg.text}"))

        def _on_dialog(dialog: Dialog) -> None:
            tab.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", _on_dialog)
        page.goto(url)
        page.locator(f"{W} .launcher").wait_for()
        tabs.append(tab)
        return tab

    yield _open
    for tab in tabs:
        tab.page.context.close()
        assert tab.errors == [], tab.errors


def _open_widget(page: Page) -> None:
    page.locator(f"{W} .launcher").click()
    page.locator(f"{W} textarea").wait_for()


def _ask(page: Page, question: str) -> Locator:
    """Type and send a question with the keyboard; return the reply message."""
    before = _replies(page)
    page.locator(f"{W} textarea").fill(question)
    page.locator(f"{W} textarea").press("Enter")
    page.wait_for_function(REPLIED_JS, arg=before)
    return page.locator(f"{W} .msg.bot").last


def _replies(page: Page) -> int:
    count: int = page.evaluate(f"{ROOT_JS}.querySelectorAll('.msg.bot').length")
    return count


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(150)  # let the scroll position settle
    page.screenshot(path=str(SCREENSHOTS / name))


def _active(page: Page) -> dict[str, Any]:
    """What has focus inside the widget (classes, tag, text)."""
    info: dict[str, Any] = page.evaluate(
        """() => {
          const host = document.activeElement;
          const inner = host && host.shadowRoot ? host.shadowRoot.activeElement : null;
          return {host: host ? host.tagName.toLowerCase() : null,
                  tag: inner ? inner.tagName.toLowerCase() : null,
                  cls: inner ? inner.className : null,
                  text: inner ? inner.textContent : null};
        }"""
    )
    return info


# --- the tests ------------------------------------------------------------------------


def test_chinese_answer_on_the_demo_page_under_its_csp(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(f"{widget_sites.service}/")
    page = tab.page
    assert "script-src 'self'" in _csp(widget_sites)  # no inline script runs on the demo
    snippet = page.locator("pre").inner_text()
    assert '<script src="https://YOUR-POLICY-QA-HOST/widget.js"' in snippet
    assert 'data-site-key="demo-site-key"' in snippet
    _open_widget(page)
    assert page.locator(f"{W} h2").inner_text() == "政策问答助手"  # data-title
    with page.expect_request(re.compile(r"/v1/ask$")) as asked:
        reply = _ask(page, ZH_QUESTION)
    assert asked.value.headers.get("x-site-key") == SITE_KEY
    answer = reply.locator(".answer-text")
    assert "115" in answer.inner_text()
    assert reply.locator(".cite").count() >= 1
    assert reply.locator(".label").first.inner_text() == "出处"
    source = reply.locator(".sources .source").first
    assert "聚力打造世界主要科学中心" in source.locator(".doc").inner_text()
    assert "深化科技体制改革" in source.locator(".sec").inner_text()
    _shot(page, "widget-zh.png")

    # The citation opens the passage, in context, with the answer sentence marked.
    reply.locator(".cite").first.click()
    mark = page.locator(f"{W} .source-view mark")
    mark.wait_for()
    assert mark.inner_text() == ANSWER_SENTENCE
    assert _strip_markers(answer.inner_text()).startswith(ANSWER_SENTENCE)
    page.locator(f"{W} .source-view .ctx").first.wait_for()  # document text fetched
    assert "六、深化科技体制改革" in page.locator(f"{W} .sv-meta").inner_text()
    _shot(page, "widget-citation.png")
    refused = [line for line in tab.console if "Content Security Policy" in line]
    assert refused == []


def _csp(sites: Sites) -> str:
    with urllib.request.urlopen(f"{sites.service}/", timeout=10) as response:  # noqa: S310
        return str(response.headers.get("Content-Security-Policy", ""))


def _strip_markers(text: str) -> str:
    return re.sub(r"\[?\d+\]?$", "", text.strip())


def test_english_answer_from_an_allowed_host_site(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    page = open_tab(f"{widget_sites.host}/en.html").page
    launcher = page.locator(f"{W} .launcher")
    assert launcher.get_attribute("aria-label") == "Open the policy Q&A assistant"
    _open_widget(page)
    assert page.locator(f"{W} h2").inner_text() == "Policy Q&A"
    reply = _ask(page, EN_QUESTION)
    assert "115" in reply.locator(".answer-text").inner_text()
    labels = [label.lower() for label in reply.locator(".label").all_inner_texts()]
    assert labels[0].startswith("reading aid") and "sources" in labels
    # English UI: the document title comes from the catalog's English title.
    title = reply.locator(".source .doc").first.inner_text()
    assert title.startswith("Building a Major World Science Centre")
    chip = reply.locator(".cite").first
    assert (chip.get_attribute("aria-label") or "").startswith("Open source 1: ")
    _shot(page, "widget-en.png")


def test_no_answer_lists_the_closest_passages(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    status, body = _post_json(
        f"{widget_sites.service}/v1/ask", {"question": NO_ANSWER_QUESTION}, {}
    )
    assert status == 200
    assert body["no_answer"] is True and body["answer"] is None and body["passages"]

    page = open_tab(f"{widget_sites.host}/zh.html").page
    _open_widget(page)
    reply = _ask(page, NO_ANSWER_QUESTION)
    assert "no-answer" in (reply.get_attribute("class") or "")
    assert reply.locator("h3").inner_text() == "文件中未找到答案"
    assert reply.locator(".label").inner_text() == "最接近的段落"
    # The service's own words, in the question's language, say why.
    assert reply.locator(".not-stated").inner_text() == body["not_stated"]["message"]
    assert "上海" in reply.locator(".not-stated").inner_text()
    assert reply.locator(".source").count() == len(body["passages"])
    assert reply.locator(".cite").count() == 0
    _shot(page, "widget-noanswer.png")
    # A closest passage still opens, shaded but with nothing marked as the answer.
    reply.locator(".source").first.click()
    page.locator(f"{W} .source-view .passage").wait_for()
    assert page.locator(f"{W} .source-view mark").count() == 0


def test_english_answer_comes_with_a_reading_aid(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    page = open_tab(f"{widget_sites.host}/en.html").page
    _open_widget(page)
    reply = _ask(page, "How much did Beijing's technology contract turnover grow?")
    assert "9865亿元" in reply.locator(".answer-text").inner_text()
    aid = reply.locator(".aid")
    assert aid.locator(".label").inner_text().lower().startswith("reading aid")
    pairs = dict(
        zip(aid.locator("dt").all_inner_texts(), aid.locator("dd").all_inner_texts(), strict=True)
    )
    assert pairs["9865亿元"] == "986.5 billion yuan"
    assert pairs["技术合同成交额"].lower() == "technology contract turnover"
    _shot(page, "widget-en-reading-aid.png")


def test_answers_a_reader_can_trust(widget_sites: Sites, open_tab: Callable[..., Tab]) -> None:
    """A question about the document itself is answered from the catalog; an amount that
    the documents do not give, and a count where they give a ranking, are "not stated"."""
    page = open_tab(f"{widget_sites.host}/en.html").page
    _open_widget(page)
    reply = _ask(
        page, "Which body published the review of Beijing's 14th Five-Year Plan sci-tech work?"
    )
    text = reply.locator(".answer-text").inner_text()
    assert text.startswith("北京市科学技术委员会、中关村科技园区管理委员会")
    assert (
        "Zhongguancun Science Park Administrative Committee" in reply.locator(".aid").inner_text()
    )
    _shot(page, "widget-publisher.png")

    reply = _ask(page, "How much money did Beijing unicorns raise in total?")
    assert "no-answer" in (reply.get_attribute("class") or "")
    assert "no amount of money" in reply.locator(".not-stated").inner_text()
    _shot(page, "widget-unicorn-funding-en.png")

    page = open_tab(f"{widget_sites.host}/zh.html").page
    _open_widget(page)
    reply = _ask(page, "北京独角兽企业一共融资了多少钱？")
    assert "金额" in reply.locator(".not-stated").inner_text()
    _shot(page, "widget-unicorn-funding-zh.png")
    reply = _ask(page, "北京累计认定了多少家高新技术企业？")
    assert "no-answer" in (reply.get_attribute("class") or "")
    assert "数量" in reply.locator(".not-stated").inner_text()
    snippets = " ".join(reply.locator(".source .snippet").all_inner_texts())
    assert "高新技术企业" in snippets  # the ranking passage is among the closest shown
    _shot(page, "widget-high-tech-firms.png")


def test_keyboard_only(widget_sites: Sites, open_tab: Callable[..., Tab]) -> None:
    page = open_tab(f"{widget_sites.host}/zh.html").page
    for _ in range(12):
        page.keyboard.press("Tab")
        if "launcher" in (_active(page)["cls"] or ""):
            break
    else:
        pytest.fail("Tab never reached the widget's launcher")
    launcher = page.locator(f"{W} .launcher")
    assert launcher.get_attribute("aria-expanded") == "false"
    page.keyboard.press("Enter")
    assert launcher.get_attribute("aria-expanded") == "true"
    assert _active(page)["tag"] == "textarea"  # focus moved into the composer
    page.keyboard.type("第一行")
    page.keyboard.press("Shift+Enter")
    assert page.locator(f"{W} textarea").input_value() == "第一行\n"  # newline, not sent
    page.keyboard.press("Control+A")
    page.keyboard.type(ZH_QUESTION)
    before = _replies(page)
    page.keyboard.press("Enter")
    page.wait_for_function(REPLIED_JS, arg=before)
    assert "answer" in (_active(page)["cls"] or "")  # focus on the new answer
    page.keyboard.press("Tab")
    focused = _active(page)
    assert focused["tag"] == "button" and "cite" in focused["cls"], focused
    page.keyboard.press("Enter")
    page.locator(f"{W} .source-view mark").wait_for()
    assert _active(page)["tag"] == "button"  # the back button
    page.keyboard.press("Escape")
    assert page.locator(f"{W} .source-view").is_hidden()
    assert "cite" in (_active(page)["cls"] or "")  # focus returned to the chip
    page.keyboard.press("Escape")
    assert page.locator(f"{W} .panel").is_hidden()
    assert "launcher" in (_active(page)["cls"] or "")
    assert launcher.get_attribute("aria-expanded") == "false"
    # ARIA: the message list is a live log; every control is a labelled real button.
    log = page.locator(f"{W} .log")
    assert log.get_attribute("role") == "log" and log.get_attribute("aria-live") == "polite"
    unlabelled = page.evaluate(
        f"""[...{ROOT_JS}.querySelectorAll('button')]
            .filter(b => !(b.getAttribute('aria-label') || b.textContent.trim())).length"""
    )
    assert unlabelled == 0


def test_small_screen_375_px(widget_sites: Sites, open_tab: Callable[..., Tab]) -> None:
    page = open_tab(f"{widget_sites.host}/zh.html", viewport=PHONE).page
    _open_widget(page)
    panel = page.locator(f"{W} .panel").bounding_box()
    assert panel is not None
    assert panel["x"] == 0 and panel["width"] == PHONE["width"]
    assert panel["y"] == 0 and panel["height"] == PHONE["height"]
    reply = _ask(page, ZH_QUESTION)
    assert "115" in reply.locator(".answer-text").inner_text()
    overflow = page.evaluate(
        f"""() => {{
          const r = {ROOT_JS};
          const log = r.querySelector('.log');
          return {{page: document.documentElement.scrollWidth,
                   log: log.scrollWidth - log.clientWidth}};
        }}"""
    )
    assert overflow["page"] <= PHONE["width"] and overflow["log"] <= 0, overflow
    _shot(page, "widget-mobile.png")
    reply.locator(".cite").first.click()
    page.locator(f"{W} .source-view mark").wait_for()
    view = page.locator(f"{W} .source-view").bounding_box()
    assert view is not None and view["width"] <= PHONE["width"]
    _shot(page, "widget-mobile-citation.png")


def test_script_like_text_stays_inert_and_host_css_cannot_break_it(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(f"{widget_sites.host}/hostile.html")
    page = tab.page
    launcher = page.locator(f"{W} .launcher")
    assert launcher.is_visible()
    assert page.evaluate(f"getComputedStyle(document.querySelector('{W}')).display") == "block"
    _open_widget(page)
    reply = _ask(page, XSS_QUESTION)
    assert "115" in reply.locator(".answer-text").inner_text()
    question = page.locator(f"{W} .msg.user .bubble").last
    assert question.inner_text().endswith(XSS_QUESTION)
    # Rendered as text: no element was created from it, and nothing ran.
    created = page.evaluate(
        f"""() => ({{img: {ROOT_JS}.querySelectorAll('img').length
                     + document.querySelectorAll('img').length,
                     script: {ROOT_JS}.querySelectorAll('script').length}})"""
    )
    assert created == {"img": 0, "script": 0}
    page.wait_for_timeout(300)
    assert tab.dialogs == []
    # The host's '!important' rules do not reach inside: sizes and colours are the widget's.
    styles = page.evaluate(
        f"""() => {{
          const r = {ROOT_JS};
          const css = (sel) => getComputedStyle(r.querySelector(sel));
          return {{text: css('.answer-text').color, size: css('.answer-text').fontSize,
                   input: css('textarea').visibility, launcher: css('.launcher').display}};
        }}"""
    )
    assert styles["text"] != "rgb(255, 0, 0)" and styles["size"] == "14.5px", styles
    assert styles["input"] == "visible" and styles["launcher"] == "flex", styles
    _shot(page, "widget-hostile.png")


def test_server_text_is_never_parsed_as_html(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    payload = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    fake = {
        "question": "q",
        "language": "en",
        "language_detail": "en",
        "answer": {
            "text": f"{payload} is quoted [1]",
            "citations": [1],
            "reading_aid": {"terms": [{"text": payload, "english": payload}], "figures": []},
        },
        "no_answer": False,
        "passages": [
            {
                "rank": 1,
                "chunk_id": "evil:0",
                "doc_id": "evil",
                "title": payload,
                "section": payload,
                "text": f"before {payload} after",
                "score": 1.0,
                "start": 0,
                "end": len(f"before {payload} after"),
                "highlights": [{"start": 7, "end": 7 + len(payload)}],
            }
        ],
    }
    tab = open_tab(f"{widget_sites.service}/")
    page = tab.page
    page.route(
        re.compile(r"/v1/ask$"),
        lambda route: route.fulfill(status=200, json=fake),
    )
    page.route(
        re.compile(r"/v1/documents/evil$"),
        lambda route: route.fulfill(status=200, json={"text": f"before {payload} after"}),
    )
    _open_widget(page)
    reply = _ask(page, "anything")
    assert payload in reply.locator(".answer-text").inner_text()
    assert reply.locator(".aid dt").inner_text() == payload
    reply.locator(".cite").first.click()
    assert page.locator(f"{W} .source-view mark").inner_text() == payload
    page.wait_for_timeout(300)
    counts = page.evaluate(
        f"""() => [{ROOT_JS}.querySelectorAll('img, script').length,
                   document.querySelectorAll('img').length]"""
    )
    assert counts == [0, 0]
    assert tab.dialogs == []


def test_refused_origin_shows_a_polite_error(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    # The API refuses the work for an origin that is not on the allow-list ...
    status, body = _post_json(
        f"{widget_sites.service}/v1/ask",
        {"question": ZH_QUESTION},
        {"Origin": widget_sites.foreign, "X-Site-Key": SITE_KEY},
    )
    assert status == 403 and "not allowed" in body["detail"]
    # ... and a browser never sends it: the CORS preflight is refused first (no
    # Access-Control-Allow-Origin), so the page sees a failed fetch, not the 403 itself.
    preflight = urllib.request.Request(  # noqa: S310 (loopback URL built by the test)
        f"{widget_sites.service}/v1/ask",
        method="OPTIONS",
        headers={
            "Origin": widget_sites.foreign,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-site-key",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(preflight, timeout=10)  # noqa: S310
    assert refused.value.code >= 400
    assert "access-control-allow-origin" not in {k.lower() for k in refused.value.headers}
    refused.value.close()

    page = open_tab(f"{widget_sites.foreign}/zh.html").page
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    _open_widget(page)
    reply = _ask(page, ZH_QUESTION)
    assert reply.get_attribute("data-error") == "forbidden"
    assert reply.inner_text().strip().endswith("抱歉，本网站未获授权使用该问答服务。")
    assert reply.locator(".retry").count() == 0  # retrying cannot help
    _shot(page, "widget-refused.png")
    assert f"{widget_sites.service}/v1/ask" in failed


def test_rate_limit_and_server_errors_are_explained(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    page = open_tab(f"{widget_sites.service}/").page
    replies = iter(
        [
            {"status": 429, "headers": {"Retry-After": "17"}, "json": {"detail": "slow down"}},
            {"status": 500, "json": {"detail": "boom"}},
            {"status": 503, "json": {"detail": "index not ready"}},
        ]
    )
    page.route(re.compile(r"/v1/ask$"), lambda route: route.fulfill(**next(replies)))
    _open_widget(page)
    limited = _ask(page, ZH_QUESTION)
    assert limited.get_attribute("data-status") == "429"
    assert "17 秒" in limited.inner_text()
    assert limited.locator(".retry").is_disabled()  # until Retry-After has passed
    failed = _ask(page, ZH_QUESTION)
    assert "错误 500" in failed.inner_text()
    starting = _ask(page, ZH_QUESTION)
    assert "正在启动" in starting.inner_text()
    assert starting.locator(".retry").is_enabled()


def test_loaded_twice_adds_one_element_and_no_globals(
    widget_sites: Sites, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(f"{widget_sites.host}/twice.html")
    page = tab.page
    assert page.evaluate(f"document.querySelectorAll('{W}').length") == 1
    assert page.evaluate(f"!!customElements.get('{W}')")
    # No CSS leaked onto the host's own elements that share the widget's class names.
    probe = page.evaluate(
        """() => ({panel: getComputedStyle(document.getElementById('probe-panel')).position,
                   mark: getComputedStyle(document.getElementById('probe-mark')).boxShadow})"""
    )
    assert probe == {"panel": "static", "mark": "none"}
    added = page.evaluate(
        """async (url) => {
          const frame = document.createElement('iframe');
          frame.src = url;
          document.body.append(frame);
          await new Promise((ok) => frame.addEventListener('load', ok));
          const clean = new Set(Object.getOwnPropertyNames(frame.contentWindow));
          frame.remove();
          return Object.getOwnPropertyNames(window).filter((name) => !clean.has(name));
        }""",
        f"{widget_sites.host}/bare.html",
    )
    assert added == [], added
