"""``windowner serve`` with real parts: a model trained on the embedded corpus, the server as a
subprocess on a free port spoken to over HTTP, and the page driven in headless Chromium.

The HTML rendering (``windowner.html``) is checked in-process against the records of the
same model; the rest is marked slow (subprocesses, a browser, a 1 MB request).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import ROOT, embedded_data, strip_ansi
from windowner.cli import app
from windowner.html import LABEL_COLORS, label_color, render_doc, render_html

HAS_SERVE = find_spec("fastapi") is not None and find_spec("uvicorn") is not None
needs_serve = pytest.mark.skipif(
    not HAS_SERVE, reason="the serve extra is not installed: pip install 'windowner[serve]'"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or find_spec("playwright") is None,
    reason="headless browser tests need Debian's chromium (apt-get install -y chromium) "
    "and the playwright package (pip install playwright)",
)

TEXT = (
    "Elena Marsh said the talks in Paris had been constructive. Museums in Vienna will stay "
    "open late on Fridays.\nThe French government announced new rail subsidies on Tuesday."
)
runner = CliRunner()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for 2 epochs on the embedded corpus (about a second)."""
    out = tmp_path_factory.mktemp("serve") / "run"
    args = ["train", "--config", str(ROOT / "configs/adam.yaml"), "--set", "train.epochs=2"]
    result = runner.invoke(app, [*args, *embedded_data(), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def ner(run_dir: Path):
    from windowner.api import load

    return load(run_dir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run_dir: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """``windowner serve`` on a free port, once /health answers (or the test fails)."""
    port = free_port()
    command = [sys.executable, "-m", "windowner", "serve", "--model", str(run_dir)]
    env = {k: v for k, v in os.environ.items() if k != "WINDOWNER_DEBUG"}
    proc = subprocess.Popen(
        [*command, "--port", str(port), *extra], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if request(port, "GET", "/health")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("server did not answer /health within 60 s")


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


@pytest.fixture(scope="module")
def server(run_dir: Path):
    if not HAS_SERVE:
        pytest.skip("the serve extra is not installed: pip install 'windowner[serve]'")
    proc, port = start_server(run_dir)
    yield port
    code, err = stop_server(proc)
    assert code == 130, err


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one HTTP request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(port: int, path: str, data) -> tuple[int, object]:
    body = json.dumps(data).encode()
    status, _, raw = request(port, "POST", path, body, {"Content-Type": "application/json"})
    return status, json.loads(raw)


def without_scores(record: dict) -> dict:
    """The record with every ``score`` dropped (compared apart, with a tolerance)."""
    return json.loads(
        json.dumps(record), object_hook=lambda d: {k: v for k, v in d.items() if k != "score"}
    )


def scores_of(record: dict) -> list[float]:
    tokens = [t["score"] for s in record["sentences"] for t in s["tokens"]]
    return tokens + [e["score"] for e in record["entities"]]


# ----------------------------------------------------------------------------- the HTML


class MarkText(HTMLParser):
    """Text of every ``mark.ent``'s ``.ent-text``, and the page text without the badges."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[str] = []
        self.plain: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.stack.append(dict(attrs).get("class") or "")
        if self.stack[-1] == "ent-text":
            self.marks.append("")

    def handle_endtag(self, tag: str) -> None:
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if any(c in ("ent-label", "ent-score", "legend") for c in self.stack):
            return
        if "ent-text" in self.stack:
            self.marks[-1] += data
        if "doc" in self.stack:
            self.plain.append(data)


def parsed(html: str) -> MarkText:
    parser = MarkText()
    parser.feed(html)
    parser.close()
    return parser


WORDS = st.sampled_from(
    ["Paris", "Elena", "Marsh", "said", "the", "EU", "<b>", "&amp;", "\"q\"", "Vienna", "O'Neil",
     "U.S.", "New", "York", "café", "—", "!", "?", ".", "Tuesday"]
)  # fmt: skip
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", " \n "])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(WORDS, SEPARATORS), max_size=40))
def test_rendered_marks_hold_exactly_the_entity_texts(ner, parts) -> None:
    text = "".join(w + s for w, s in parts)
    record = ner(text).to_dict()
    page = parsed(render_doc(record))
    assert page.marks == [e["text"] for e in record["entities"]]
    assert "".join(page.plain) == text  # nothing lost, nothing escaped twice


def test_render_html_is_one_offline_file(ner) -> None:
    docs = [ner(TEXT), ner("<script>alert('x')</script> in Paris")]
    page = render_html(docs, title="news & views")
    assert page.startswith("<!doctype html>") and "<title>news &amp; views</title>" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "mark.ent" in page  # the stylesheet is inlined
    labels = sorted({e.label for d in docs for e in d.entities})
    assert parsed(page).marks == [e.text for d in docs for e in d.entities]
    for label in labels:
        assert f'data-label="{label}" style="background:{label_color(label)}"' in page


def test_explain_records_render_clickable_tokens(ner) -> None:
    record = ner.explain(TEXT)
    html = render_doc(record)
    tokens = [t for s in record["sentences"] for t in s["tokens"]]
    assert html.count('class="tok"') == len(tokens)
    panel = '<aside id="explain-panel"'
    assert panel in render_html([record]) and panel not in render_html([ner(TEXT)])
    assert "showToken" in render_html([record])  # the explain script is inlined


def test_label_colors_are_fixed_for_conll_types_and_stable_for_others() -> None:
    assert label_color("PER") == LABEL_COLORS["PER"]
    assert label_color("PRODUCT") == label_color("PRODUCT")
    assert label_color("PRODUCT").startswith("#")


# ----------------------------------------------------------------------------- the CLI


def test_help_does_not_import_the_server_libraries() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom windowner.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0 and 'serve' in r.output\n"
        "assert not {'fastapi', 'uvicorn', 'starlette'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_serve_without_the_extra_names_it() -> None:
    code = (
        "import sys\nsys.modules['fastapi'] = None  # as if the serve extra were not installed\n"
        "from typer.testing import CliRunner\nfrom windowner.cli import app\n"
        "r = CliRunner().invoke(app, ['serve'])\nprint(r.exit_code, r.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.startswith("2 ")
    assert "needs the serve extra (fastapi is missing): pip install 'windowner[serve]'" in (
        strip_ansi(done.stdout)
    )


@needs_serve
def test_serve_on_a_taken_port_is_a_usage_error(run_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--model", str(run_dir), "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in strip_ansi(result.output)


@needs_serve
def test_serve_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no such model file or run directory" in strip_ansi(result.output)


# ----------------------------------------------------------------------------- HTTP


@pytest.mark.slow
def test_ner_returns_the_api_records(server: int, ner) -> None:
    status, record = post_json(server, "/ner", {"text": TEXT})
    assert status == 200
    expected = ner(TEXT).to_dict()  # in-process; BLAS thread counts may move the last bits
    assert without_scores(record) == without_scores(expected)
    assert scores_of(record) == pytest.approx(scores_of(expected), rel=1e-5)
    for sent in record["sentences"]:
        for tok in sent["tokens"]:
            assert TEXT[tok["start_char"] : tok["end_char"]] == tok["text"]
            assert 0.0 <= tok["score"] <= 1.0
    assert record["entities"], "the test text should hold an entity the model finds"
    for ent in record["entities"]:
        assert TEXT[ent["start_char"] : ent["end_char"]] == ent["text"]


@pytest.mark.slow
def test_ner_batch_equals_one_by_one(server: int) -> None:
    texts = [TEXT, "", "EU rejects German call.", "   \n  "]
    status, records = post_json(server, "/ner", {"texts": texts})
    assert status == 200 and [r["text"] for r in records] == texts
    one_by_one = [post_json(server, "/ner", {"text": t})[1] for t in texts]
    assert [without_scores(r) for r in records] == [without_scores(r) for r in one_by_one]
    assert sum(map(scores_of, records), []) == pytest.approx(sum(map(scores_of, one_by_one), []))


@pytest.mark.slow
def test_explain_adds_windows_and_tag_scores(server: int, ner) -> None:
    status, record = post_json(server, "/ner?explain=1", {"text": TEXT})
    assert status == 200
    tags = ner.card()["tags"]
    for tok in (t for s in record["sentences"] for t in s["tokens"]):
        assert len(tok["window"]) == ner.card()["spec"]["window"]
        assert sorted(tok["scores"]) == sorted(tags)


@pytest.mark.slow
def test_health_model_card_and_openapi(server: int, run_dir: Path) -> None:
    status, _, raw = request(server, "GET", "/health")
    assert status == 200 and json.loads(raw)["status"] == "ok"
    status, _, raw = request(server, "GET", "/model")
    card = json.loads(raw)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert card["labels"] == sorted({t[2:] for t in summary["tags"] if t != "O"})
    assert card["scores"]["dev"]["f1"] == summary["dev"]["f1"]
    assert card["config"]["data"]["train"].endswith("train.conll")
    status, _, raw = request(server, "GET", "/openapi.json")
    schema = json.loads(raw)
    assert {"/ner", "/render", "/health", "/model"} <= set(schema["paths"])
    assert "DocRecord" in schema["components"]["schemas"]
    assert request(server, "GET", "/docs")[0] == 404  # Swagger UI would load a CDN script


@pytest.mark.slow
def test_page_and_assets_are_served_locally(server: int) -> None:
    status, headers, raw = request(server, "GET", "/")
    page = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for asset in ("static/windowner.css", "static/app.js", "static/explain.js"):
        assert f'"{asset}"' in page
        assert request(server, "GET", "/" + asset)[0] == 200
    assert "http://" not in page and "https://" not in page


BAD_BODIES = [
    (b"", "empty body"),
    (b'{"text": "a" ', "invalid JSON at character 13"),
    (b'{"text": 3}', "text: Input should be a valid string"),
    (b'{"text": "a", "texts": ["b"]}', 'exactly one of "text" or "texts"'),
    (b'{"txt": "a"}', "txt: Extra inputs are not permitted"),
    (b'["a"]', "body: Input should be a valid dictionary"),
    (b'{"text": "caf\xe9"}', "body is not UTF-8 JSON (byte 0xe9 at offset 13)"),
    (b'{"text": "\\ud800"}', "lone surrogate at offset 0"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_bad_bodies_get_422_with_one_clear_line(server: int, body: bytes, message: str) -> None:
    status, _, raw = request(server, "POST", "/ner", body, {"Content-Type": "application/json"})
    assert status == 422
    detail = json.loads(raw)["detail"]
    assert message in detail and "\n" not in detail


@pytest.mark.slow
def test_oversized_bodies_get_413(server: int) -> None:
    big = json.dumps({"text": "word " * 300_000}).encode()  # 1.5 MB > the 1 MiB limit
    status, _, raw = request(server, "POST", "/ner", big, {"Content-Type": "application/json"})
    assert status == 413 and "limit of 1048576 bytes" in json.loads(raw)["detail"]
    # without a Content-Length: chunked, counted while it streams
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    conn.request("POST", "/ner", body=chunks, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()
    status, explained = post_json(server, "/ner?explain=1", {"text": "a " * 20_000})
    assert status == 413 and "explain takes at most" in explained["detail"]


@pytest.mark.slow
def test_one_megabyte_of_text_is_tagged_without_blocking_other_requests(server: int) -> None:
    sentence = "Elena Marsh met officials of the EU in Paris on Tuesday. "
    text = (sentence * (1_000_000 // len(sentence) + 1))[: 1_000_000 - 20]
    body = json.dumps({"text": text}).encode()
    assert len(body) <= 1 << 20
    result: dict = {}

    def big() -> None:
        hdr = {"Content-Type": "application/json"}
        result["status"], _, result["raw"] = request(server, "POST", "/ner", body, hdr)

    worker = threading.Thread(target=big)
    worker.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    health = request(server, "GET", "/health")[0]
    health_seconds = time.perf_counter() - t0
    busy = worker.is_alive()
    worker.join(timeout=120)
    assert health == 200 and result["status"] == 200
    assert busy, "the 1 MB request finished too soon to show the loop stayed free"
    assert health_seconds < 1.0, f"/health took {health_seconds:.2f} s during a big request"
    record = json.loads(result["raw"])
    assert record["text"] == text and len(record["entities"]) > 1000
    for ent in record["entities"][:: max(1, len(record["entities"]) // 200)]:
        assert text[ent["start_char"] : ent["end_char"]] == ent["text"]


@pytest.mark.slow
@needs_serve
def test_workers_share_the_port_and_stop_on_sigterm(run_dir: Path) -> None:
    proc, port = start_server(run_dir, "--workers", "2")
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 2
    served_by = json.loads(request(port, "GET", "/health")[2])["pid"]
    assert str(served_by) in children
    status, record = post_json(port, "/ner", {"text": TEXT})
    assert status == 200 and record["text"] == TEXT
    code, err = stop_server(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or find_spec("playwright") is None:
        pytest.skip(needs_browser.kwargs["reason"])
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    """A new page that records every URL it requests."""
    page = browser.new_page()
    page.requested = []
    page.on("request", lambda req: page.requested.append(req.url))
    page.goto(url)
    return page


@pytest.mark.slow
@needs_browser
def test_page_highlights_the_entities_the_api_returns(server: int, browser, ner) -> None:
    base = f"http://127.0.0.1:{server}/"
    page = open_page(browser, base)
    page.fill("#text", TEXT)
    page.click("#tag-button")
    page.wait_for_selector("body[data-state=done]")
    _, record = post_json(server, "/ner", {"text": TEXT})
    marks = page.locator("mark.ent")
    assert marks.locator(".ent-text").all_inner_texts() == [e["text"] for e in record["entities"]]
    assert [m.get_attribute("data-label") for m in marks.all()] == [
        e["label"] for e in record["entities"]
    ]
    assert page.locator(".legend-item").all_inner_texts() == ner.card()["labels"]
    score = marks.first.locator(".ent-score")
    assert not score.is_visible()
    marks.first.hover()
    assert score.is_visible()
    assert score.inner_text().endswith(f"{record['entities'][0]['score']:.2f}")
    assert page.locator("#status").inner_text().startswith(f"{len(record['entities'])} entities")
    assert all(u.startswith(base) for u in page.requested), page.requested
    page.click("#explain-toggle")  # the same text, now with clickable tokens
    page.wait_for_selector("body[data-state=done] .tok")
    assert page.input_value("#text") == TEXT
    assert page.locator("mark.ent .ent-text").all_inner_texts() == [
        e["text"] for e in record["entities"]
    ]
    page.close()


@pytest.mark.slow
@needs_browser
def test_explain_page_shows_a_tokens_window_and_scores(server: int, browser, ner) -> None:
    url = f"http://127.0.0.1:{server}/?explain=1&text=" + urllib.parse.quote(TEXT)
    page = open_page(browser, url)
    page.wait_for_selector("body[data-state=done]")
    tokens = page.locator(".tok")
    record = ner.explain(TEXT)
    flat = [t for s in record["sentences"] for t in s["tokens"]]
    assert tokens.all_inner_texts() == [t["text"] for t in flat]
    assert page.locator("#explain-panel").is_hidden()
    tokens.nth(3).click()
    panel = page.locator("#explain-panel")
    assert panel.is_visible()
    assert panel.locator(".window span").all_inner_texts() == flat[3]["window"]
    assert panel.locator("tr").count() == len(flat[3]["scores"])
    assert panel.locator("tr.chosen td").first.inner_text() == flat[3]["tag"]
    page.close()


@pytest.mark.slow
@needs_browser
def test_predict_html_file_renders_offline(browser, ner, tmp_path: Path) -> None:
    docs = [ner(TEXT), ner("Museums in Vienna will stay open late.")]
    path = tmp_path / "entities.html"
    path.write_text(render_html(docs), encoding="utf-8")
    page = open_page(browser, path.as_uri())
    texts = page.locator("mark.ent .ent-text").all_inner_texts()
    assert texts == [e.text for d in docs for e in d.entities]
    assert all(u.startswith("file://") for u in page.requested), page.requested
    page.close()
