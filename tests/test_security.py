"""Security: keys, logs, hostile uploads, path traversal, CORS, rate limits, headers.

Tests that write (uploads, deletes) run on a throwaway app over a copy of the session's
corpus and index; read-only checks use the session client. Apps that only need their
guards (auth, limits, headers) run without a lifespan, so they never load an index.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter

from index.documents import SUPPORTED_SUFFIXES, extract_text
from index.errors import (
    InvalidInputError,
    RateLimitedError,
    UnauthorizedError,
    UnsupportedMediaError,
)
from index.settings import Settings
from service import guards
from service.state import MAX_DOCUMENT_CHARS
from tests.apps import StartApp, guards_only

ADMIN_KEY = "test-admin-key"
RETRIEVAL_KEY = "test-retrieval-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADMIN_ROUTES = [
    ("GET", "/v1/admin/status"),
    ("POST", "/v1/admin/documents"),
    ("DELETE", "/v1/admin/documents/bjsti-review-14fyp"),
    ("POST", "/v1/admin/rebuild"),
]
BAD_AUTH: list[str | bytes | None] = [
    None,
    "Bearer",
    "Bearer ",
    "Bearer wrong",
    f"Bearer {ADMIN_KEY[:-1]}",  # a prefix
    f"Bearer {ADMIN_KEY}x",  # a suffix
    f"Bearer {ADMIN_KEY.upper()}",
    ADMIN_KEY,  # no scheme
    f"Basic {ADMIN_KEY}",
    f"Token {ADMIN_KEY}",
    f"Bearer {RETRIEVAL_KEY}",  # a retrieval key is not an admin key
    "Bearer " + "k" * 10_000,
    b"Bearer t\xc3\xa9st-admin-key",  # non-ASCII bytes on the wire
    b"Bearer \xff\xfe",
]


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own(start_app: StartApp) -> Iterator[TestClient]:
    """A throwaway app over a copy of the session's corpus and index, for writes."""
    with start_app("copy") as client:
        assert client.get("/readyz").status_code == 200
        yield client


def state_of(client: TestClient) -> tuple[str, bytes, str | None]:
    """What must not change: the served documents, the catalog file and the version."""
    service = client.app.state.service  # type: ignore[attr-defined]
    ids = ",".join(sorted(service.snapshot.documents))
    return ids, service.settings.catalog_path.read_bytes(), service.version


def upload(
    client: TestClient, name: str, data: bytes, doc_id: str = "upload-test", **extra: str
) -> Any:
    return client.post(
        "/v1/admin/documents",
        headers=ADMIN,
        files={"file": (name, data, "application/octet-stream")},
        data={"id": doc_id, "title_zh": "测试文件", "title_en": "Test file", **extra},
    )


# ---- admin and retrieval keys -----------------------------------------------------------


@pytest.mark.parametrize("auth", BAD_AUTH, ids=lambda a: repr(a)[:30])
def test_admin_refuses_missing_and_wrong_keys(own: TestClient, auth: str | bytes | None) -> None:
    before = state_of(own)
    headers = {} if auth is None else {"Authorization": auth}
    for method, path in ADMIN_ROUTES:
        reply = own.request(method, path, headers=headers)  # type: ignore[arg-type]
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.headers["www-authenticate"] == "Bearer"
        assert ADMIN_KEY not in reply.text
    assert state_of(own) == before


def test_the_right_key_is_accepted_whatever_the_scheme_case(client: TestClient) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {ADMIN_KEY}"}
        assert client.get("/v1/admin/status", headers=headers).status_code == 200


def test_admin_is_off_without_a_configured_key(settings: Settings) -> None:
    off = guards_only(settings, admin_key=None)
    for method, path in ADMIN_ROUTES:
        reply = off.request(method, path, headers=ADMIN)
        assert reply.status_code == 403 and "disabled" in reply.json()["detail"]


def test_retrieval_keys(client: TestClient) -> None:
    """Dify reads 403 (not 401) as a refused key: see test_dify.py for its error codes."""
    payload = {"knowledge_id": "policy-qa", "query": "独角兽企业"}
    for auth in BAD_AUTH:
        headers = {} if auth is None else {"Authorization": auth}
        if auth == f"Bearer {RETRIEVAL_KEY}":
            continue
        reply = client.post("/retrieval", json=payload, headers=headers)  # type: ignore[arg-type]
        assert reply.status_code == 403, (auth, reply.text)
        assert reply.json()["error_code"] in (1001, 1002)
    for key in (RETRIEVAL_KEY, ADMIN_KEY):  # the admin key also opens /retrieval, by design
        reply = client.post("/retrieval", json=payload, headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 200


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared with hmac.compare_digest, match or not: no ``==``,
    no early exit that would tell an attacker which key nearly matched."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what service.guards calls
    keys = ["first-key", "second-key", "third-key"]
    guards.require_bearer("Bearer first-key", keys, what="x")
    assert [b for _, b in calls] == [k.encode() for k in keys]
    calls.clear()
    with pytest.raises(UnauthorizedError):
        guards.require_bearer("Bearer first-kez", keys, what="x")
    assert len(calls) == len(keys) and all(isinstance(a, bytes) for a, _ in calls)


def test_settings_never_show_keys(settings: Settings) -> None:
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    assert ADMIN_KEY not in shown and RETRIEVAL_KEY not in shown


# ---- keys never logged ------------------------------------------------------------------


def test_keys_are_never_logged(own: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Every log record any logger writes at DEBUG, formatted as the service's JSON lines."""
    caplog.set_level(logging.DEBUG)
    wrong = "Bearer wrong-but-secret-looking-key-0123456789"
    replies = [
        own.get("/v1/admin/status", headers=ADMIN),
        own.get("/v1/admin/status", headers={"Authorization": wrong}),
        own.get(f"/v1/admin/status?key={ADMIN_KEY}", headers={"Authorization": wrong}),
        upload(own, "bad.exe", b"MZ"),  # 415 with the admin key
        upload(own, "bad.txt", b"\xff\xfe\x00"),  # 422 from the parser
        own.post("/v1/admin/documents", headers=ADMIN, data={"id": "../x"}),  # 422
        own.delete("/v1/admin/documents/no-such-doc", headers=ADMIN),  # 404
        own.post(
            "/retrieval",
            json={"knowledge_id": "policy-qa", "query": "独角兽"},
            headers={"Authorization": f"Bearer {RETRIEVAL_KEY}"},
        ),
        own.post("/retrieval", json={"query": 1}, headers={"Authorization": wrong}),
    ]
    assert [r.status_code for r in replies] == [200, 401, 401, 415, 422, 422, 404, 200, 403]
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    lines = [
        f"{formatter.format(record)} {record.args!r} {record.__dict__!r}"
        for record in caplog.records
        if not record.name.startswith("httpx")  # the test client's own request log
    ]
    assert len(lines) >= len(replies)  # one access line per request at least
    secrets = (ADMIN_KEY, RETRIEVAL_KEY, "wrong-but-secret-looking-key")
    for line in lines:
        assert not any(secret in line for secret in secrets), line
    for reply in replies:
        assert not any(secret in reply.text for secret in secrets), reply.text


# ---- uploads: size, type and hostile files ----------------------------------------------


def _zip_bomb() -> bytes:
    """A 200 KB .docx whose document.xml inflates to 201 MB of zeros."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as part,
    ):
        block = b"\0" * (1 << 20)
        for _ in range(201):
            part.write(block)
    return buffer.getvalue()


def _docx(document_xml: bytes | None = None) -> bytes:
    """A real .docx (python-docx), optionally with its document.xml replaced."""
    import docx

    made = docx.Document()
    made.add_paragraph("一、总则\n本办法用于测试。")
    buffer = io.BytesIO()
    made.save(buffer)
    if document_xml is None:
        return buffer.getvalue()
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = source.read(info.filename)
            archive.writestr(
                info.filename, document_xml if info.filename.endswith("document.xml") else data
            )
    return out.getvalue()


_W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_LAUGHS = b"".join(
    b'<!ENTITY l%d "%s">' % (i, b"".join(b"&l%d;" % (i - 1) for _ in range(10)))
    for i in range(1, 10)
)
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "lol">' + _LAUGHS + b"]>"
    b"<w:document " + _W + b"><w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<w:document " + _W + b"><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>"
)


def _pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


HOSTILE: list[tuple[str, Callable[[], bytes], int]] = [
    ("bomb.docx", _zip_bomb, 422),
    ("laughs.docx", lambda: _docx(BILLION_LAUGHS), 422),
    ("xxe.docx", lambda: _docx(XXE), 422),  # the entity is not resolved: no text is left
    ("not-a-zip.docx", lambda: b"PK\x03\x04" + b"\0" * 100, 422),
    ("pdf-as.docx", _pdf, 422),
    ("blank.pdf", _pdf, 422),
    ("garbage.pdf", lambda: b"%PDF-1.7\n" + bytes(range(256)) * 100, 422),
    ("half.pdf", lambda: _pdf()[: len(_pdf()) // 2], 422),
    (
        "loop.pdf",  # a page tree that contains itself
        lambda: (
            b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages"
            b"/Kids[2 0 R]/Count 1>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"
        ),
        422,
    ),
    (
        "nested.pdf",  # 100k nested arrays: a recursion bomb
        lambda: b"%PDF-1.4\n1 0 obj" + b"[" * 100_000 + b"]" * 100_000 + b"endobj\n%%EOF",
        422,
    ),
    ("docx-as.pdf", _docx, 422),
    ("binary.txt", lambda: bytes(range(256)) * 64, 422),
    ("nul.txt", lambda: "一、总则\n正文\x00".encode(), 422),
    ("utf16.md", lambda: "一、总则".encode("utf-16"), 422),
    ("evil.txt.exe", lambda: b"text", 415),
    ("evil.html", lambda: b"<script>alert(1)</script>", 415),
    ("evil.svg", lambda: b"<svg onload=alert(1)>", 415),
]


@pytest.mark.parametrize(("name", "make", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_uploads_are_clean_4xx(
    own: TestClient, name: str, make: Callable[[], bytes], status: int
) -> None:
    before = state_of(own)
    data = make()
    started = time.monotonic()
    reply = upload(own, name, data)
    assert reply.status_code == status, reply.text
    assert time.monotonic() - started < 20
    assert isinstance(reply.json()["detail"], str)
    assert state_of(own) == before
    assert not list((own.app.state.service.settings.corpus_dir / "documents").glob("upload-test*"))  # type: ignore[attr-defined]


def test_a_10mb_single_line_txt_is_refused_fast(own: TestClient) -> None:
    """Decision: the 10 MB line (under the 20 MB upload limit) is refused with 413 before
    any chunking or embedding: embedding it would hold the admin lock for hours."""
    before = state_of(own)
    line = ("北京国际科技创新中心建设" * 300_000)[: 10 * 1024 * 1024 // 3].encode()
    started = time.monotonic()
    reply = upload(own, "line.txt", line)
    assert reply.status_code == 413, reply.text
    assert f"limited to {MAX_DOCUMENT_CHARS}" in reply.json()["detail"]
    assert time.monotonic() - started < 30
    assert state_of(own) == before


def test_file_names_never_choose_the_stored_path(own: TestClient) -> None:
    corpus = own.app.state.service.settings.corpus_dir  # type: ignore[attr-defined]
    outside = corpus.parent / "escape.txt"
    reply = upload(
        own, "../../escape.txt", "一、总则\n文件名不能决定保存路径。".encode(), "name-test"
    )
    assert reply.status_code == 201, reply.text
    assert (corpus / "documents" / "name-test.txt").is_file() and not outside.exists()
    assert own.delete("/v1/admin/documents/name-test", headers=ADMIN).status_code == 200


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 512):
        yield b"x" * 512


def _streamed_oversize(settings: Settings) -> list[Any]:
    """Bodies over the limit whose size is not declared up front (chunked, or a
    Content-Length that lies): the limit must count the bytes as they arrive."""
    small = guards_only(settings, max_upload_bytes=4096, max_body_bytes=1024)
    json_type = {"content-type": "application/json"}
    replies = [
        small.post("/v1/ask", content=_chunks(4096), headers=json_type),
        small.post(
            "/v1/admin/documents",
            content=_chunks(16_384),
            headers={**ADMIN, "content-type": "multipart/form-data; boundary=x"},
        ),
        small.post(
            "/v1/ask",
            content=b'{"question": "' + b"x" * 4000 + b'"}',
            headers={**json_type, "content-length": "10"},
        ),
    ]
    return replies


def test_streamed_bodies_over_the_limit_get_413(settings: Settings) -> None:
    """F7: a 413 with the limit, not FastAPI's "400 There was an error parsing the body"."""
    replies = _streamed_oversize(settings)
    assert [reply.status_code for reply in replies] == [413, 413, 413]
    details = [reply.json()["detail"] for reply in replies]
    assert details == [f"request body exceeds {n} bytes" for n in (1024, 4096, 1024)]


def test_unauthenticated_uploads_are_not_parsed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F6: the admin key is checked before the body is read (FastAPI parses a form before
    any dependency runs), with the same 401 the route guard gives."""
    import starlette.formparsers

    parsed: list[int] = []
    original = starlette.formparsers.MultiPartParser.parse

    async def spy(self: starlette.formparsers.MultiPartParser) -> Any:
        parsed.append(1)
        return await original(self)

    monkeypatch.setattr(starlette.formparsers.MultiPartParser, "parse", spy)
    app = guards_only(settings)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = app.post(
            "/v1/admin/documents",
            headers=headers,
            files={"file": ("big.txt", b"x" * (2 << 20), "text/plain")},
            data={"id": "big", "title_zh": "大", "title_en": "Big"},
        )
        assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
        assert reply.json()["detail"] in ("missing bearer token", "invalid bearer token")
    assert parsed == []
    off = guards_only(settings, admin_key=None)
    reply = off.post("/v1/admin/documents", files={"file": ("a.txt", b"x", "text/plain")})
    assert reply.status_code == 403 and "disabled" in reply.json()["detail"]
    assert parsed == []


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_parsers_fail_cleanly_on_arbitrary_bytes(suffix: str) -> None:
    """Random and mutated files: text, or InvalidInputError — no other exception, no hang."""
    seeds = {".pdf": _pdf(), ".docx": _docx(), ".txt": "一、总则".encode(), ".md": b"# x"}

    @hypothesis.settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=2000,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        data=st.one_of(
            st.binary(max_size=4096),
            st.builds(_mutate, st.just(seeds[suffix]), st.integers(0, 2**32), st.integers(1, 64)),
        )
    )
    def parse(data: bytes) -> None:
        try:
            text = extract_text(data, suffix)
        except (InvalidInputError, UnsupportedMediaError):
            return
        assert isinstance(text, str) and text.strip() and "\x00" not in text

    parse()


def _mutate(data: bytes, seed: int, flips: int) -> bytes:
    """``data`` with ``flips`` bytes overwritten at positions derived from ``seed``."""
    out = bytearray(data)
    for i in range(flips):
        position = (seed * (i + 7919)) % len(out)
        out[position] = (seed >> (i % 24)) & 0xFF
    return bytes(out)


# ---- path traversal ---------------------------------------------------------------------

TRAVERSALS = [
    "/v1/documents/..%2F..",
    "/v1/documents/..%2F..%2Fetc%2Fpasswd",
    "/v1/documents/%2e%2e",
    "/v1/documents/%2E%2E%2Fcatalog.json",
    "/v1/documents/..%5C..%5Cwindows",
    "/v1/documents/bjsti-review-14fyp%00",
    "/v1/documents/bjsti-review-14fyp%2F..%2F..",
    "/v1/documents/..%252F..",
    "/v1/documents/..%2F..%2Fcorpus/chunks",
    "/v1/chunks/..%2F..%3A1",
    "/v1/chunks/%2e%2e:0001",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_read_ids_is_refused(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code in (404, 422), reply.text
    assert "root:" not in reply.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/documents/..%2Fx",
        "/v1/admin/documents/..%2F..%2Fcorpus%2Fcatalog.json",
        "/v1/admin/documents/%2e%2e",
        "/v1/admin/documents/bjsti-review-14fyp%2F..",
        "/v1/admin/documents/..%252Fbjsti-review-14fyp",
    ],
)
def test_path_traversal_in_admin_deletes_is_refused(own: TestClient, path: str) -> None:
    before = state_of(own)
    reply = own.delete(path, headers=ADMIN)
    assert reply.status_code in (404, 405, 422), reply.text
    assert state_of(own) == before


@pytest.mark.parametrize("doc_id", ["../x", "..", "x/../y", "./x", "X", "a" * 65, "", "x y", "é"])
def test_bad_ids_in_uploads_are_refused(own: TestClient, doc_id: str) -> None:
    before = state_of(own)
    corpus = own.app.state.service.settings.corpus_dir  # type: ignore[attr-defined]
    files_before = sorted(p.name for p in corpus.rglob("*"))
    reply = upload(own, "ok.txt", "一、总则\n正文。".encode(), doc_id)
    assert reply.status_code == 422, reply.text
    assert state_of(own) == before
    assert sorted(p.name for p in corpus.rglob("*")) == files_before


def test_traversal_in_other_ids_is_refused(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {RETRIEVAL_KEY}"}
    payload = {"knowledge_id": "../../etc/passwd", "query": "独角兽"}
    assert client.post("/retrieval", json=payload, headers=auth).status_code == 404
    for ids in (["../x"], ["bjsti-review-14fyp/../x"], ["%2e%2e"]):
        reply = client.post("/v1/ask", json={"question": "独角兽", "doc_ids": ids})
        assert reply.status_code == 422


# ---- CORS and rate limits ---------------------------------------------------------------

ALLOWED = "https://allowed.example"


def test_cors_preflight_allows_only_the_widget_surface(client: TestClient) -> None:
    def preflight(origin: str, method: str, headers: str = "content-type") -> Any:
        return client.options(
            "/v1/ask",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": headers,
            },
        )

    ok = preflight(ALLOWED, "POST", "content-type,x-site-key")
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED
    assert "x-site-key" in ok.headers["access-control-allow-headers"].lower()
    assert "*" not in ok.headers["access-control-allow-origin"]
    # Browsers may not send keys cross-origin, nor use other methods.
    for refused in (preflight(ALLOWED, "POST", "authorization"), preflight(ALLOWED, "DELETE")):
        assert refused.status_code == 400, refused.text
    for origin in ("https://evil.example", "null"):
        refused = preflight(origin, "POST")
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://allowed.example.evil"])
def test_other_origins_are_refused_before_any_work(client: TestClient, origin: str) -> None:
    for reply in (
        client.get("/v1/documents", headers={"Origin": origin}),
        client.post("/v1/ask", json={"question": "独角兽"}, headers={"Origin": origin}),
    ):
        assert reply.status_code == 403
        assert "access-control-allow-origin" not in reply.headers


def test_rate_limit_per_site_key(settings: Settings) -> None:
    """Each site key has its own budget, separate from other keys and from the per-client
    one; unknown keys are ignored (they identify no site), so the client limit still holds."""
    limited = guards_only(
        settings,
        rate_limit_per_minute=10,
        site_rate_limit_per_minute=3,
        site_keys=["demo-site-key", "abuser-key"],
    )

    def get(site_key: str | None) -> Any:
        headers = {"X-Site-Key": site_key} if site_key else {}
        return limited.get("/v1/documents", headers=headers)

    abuser = [get("abuser-key").status_code for _ in range(4)]
    assert 429 not in abuser[:3] and abuser[3] == 429  # 503s: the index is not loaded
    refused = get("abuser-key")
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert get("demo-site-key").status_code != 429  # another site is unaffected
    assert get(None).status_code != 429
    assert get("made-up-key").status_code != 429  # counts against the client only
    # The client budget (10/min) is shared by every request from one address.
    statuses = [get(None).status_code for _ in range(5)]
    assert statuses[-1] == 429
    assert limited.get("/healthz").status_code == 200  # probes are never limited


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_window_moves_and_a_refusal_spends_nothing() -> None:
    clock = _Clock()
    limiter = guards.RateLimiter(per_client=3, per_site=2, clock=clock)
    for second in (0, 10, 20):
        clock.now = 1000.0 + second
        limiter.check(client="a", site_key=None)
    clock.now = 1030.0
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(client="a", site_key=None)
    assert refused.value.retry_after == 30  # when the hit at t=0 leaves the window
    limiter.check(client="b", site_key=None)  # another address has its own budget
    clock.now = 1060.0  # the first hit has left the window: one slot, not two
    limiter.check(client="a", site_key=None)
    with pytest.raises(RateLimitedError):
        limiter.check(client="a", site_key=None)


def test_a_request_refused_by_its_site_budget_spends_no_client_budget() -> None:
    clock = _Clock()
    limiter = guards.RateLimiter(per_client=3, per_site=1, clock=clock)
    limiter.check(client="a", site_key="site")
    for _ in range(5):
        with pytest.raises(RateLimitedError):
            limiter.check(client="a", site_key="site")
    limiter.check(client="a", site_key=None)
    limiter.check(client="a", site_key=None)
    with pytest.raises(RateLimitedError):
        limiter.check(client="a", site_key=None)


def test_the_rate_limiter_forgets_idle_addresses() -> None:
    clock = _Clock()
    limiter = guards.RateLimiter(per_client=5, per_site=5, clock=clock)
    for number in range(100):
        limiter.check(client=f"10.0.0.{number}", site_key=None)
    clock.now += 2 * limiter.WINDOW_S
    limiter.check(client="10.0.1.1", site_key=None)
    assert limiter.tracked == ["client:10.0.1.1"]


def test_oversized_site_keys_are_refused(client: TestClient) -> None:
    reply = client.get("/v1/documents", headers={"X-Site-Key": "k" * 129})
    assert reply.status_code == 422


# ---- security headers -------------------------------------------------------------------


def _assert_base_headers(reply: Any) -> None:
    assert reply.headers["x-content-type-options"] == "nosniff", reply.url
    assert reply.headers["referrer-policy"] == "no-referrer", reply.url


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/healthz", "application/json"),
        ("GET", "/v1/documents", "application/json"),
        ("GET", "/openapi.json", "application/json"),
        ("GET", "/metrics", "text/plain"),
        ("GET", "/widget.js", "text/javascript"),
        ("GET", "/", "text/html"),
        ("GET", "/docs", "text/html"),
        ("GET", "/redoc", "text/html"),
        ("GET", "/no-such-page", "application/json"),  # 404
        ("GET", "/v1/admin/status", "application/json"),  # 401
        ("POST", "/v1/ask", "application/json"),  # 422
    ],
)
def test_security_headers_everywhere(client: TestClient, method: str, path: str, kind: str) -> None:
    reply = client.request(method, path)
    assert reply.headers["content-type"].startswith(kind), reply.headers["content-type"]
    _assert_base_headers(reply)
    if kind == "text/html":
        csp = reply.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert f"frame-ancestors 'self' {ALLOWED}" in csp and "base-uri 'none'" in csp
        assert reply.headers["x-frame-options"] == "SAMEORIGIN"


def _csp(reply: Any) -> dict[str, list[str]]:
    """The CSP header as directive -> sources."""
    directives = (d.split() for d in reply.headers["content-security-policy"].split(";"))
    return {name: sources for name, *sources in directives}


def _origins(urls: list[str]) -> set[str]:
    return {"/".join(url.split("/", 3)[:3]) for url in urls if url.startswith("https://")}


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_the_docs_pages_get_a_csp_they_can_run_under(client: TestClient, path: str) -> None:
    """F5: the hosts FastAPI's pages load from, and exactly their inline scripts (by hash,
    never 'unsafe-inline'); framing and base-uri as strict as on every page."""
    reply = client.get(path)
    csp = _csp(reply)
    html = reply.text
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    hashes = {
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline
    }
    assert len(hashes) == (0 if path == "/redoc" else 1)
    scripts = _origins(re.findall(r'<script src="([^"]+)"', html))
    styles = _origins(re.findall(r'<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"', html))
    styles |= _origins(re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', html))
    icons = _origins(re.findall(r'<link rel="shortcut icon" href="([^"]+)"', html))
    assert set(csp["script-src"]) == {"'self'", "https://cdn.jsdelivr.net", *hashes}
    assert scripts <= set(csp["script-src"]) and styles <= set(csp["style-src"])
    assert icons <= set(csp["img-src"])
    assert path != "/docs" or (scripts and styles and icons)  # the checks above bite
    assert "blob:" in csp["worker-src"]  # ReDoc's search runs in a worker
    assert csp["default-src"] == ["'self'"] and csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'self'", ALLOWED]
    assert reply.headers["x-frame-options"] == "SAMEORIGIN"


def test_the_widget_demo_page_keeps_the_strict_csp(client: TestClient) -> None:
    """Only the docs pages get the looser CSP: the widget's demo page allows no CDN, no
    inline script and no worker."""
    csp = _csp(client.get("/"))
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    assert "worker-src" not in csp and "font-src" not in csp
    assert csp["img-src"] == ["'self'", "data:"] and csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'self'", ALLOWED] and csp["base-uri"] == ["'none'"]
    assert "content-security-policy" not in client.get("/widget.js").headers  # not a page


def test_security_headers_on_middleware_replies(settings: Settings) -> None:
    """413 and 429 are written by middleware and guards, not by routes: headers too."""
    small = guards_only(settings, max_body_bytes=1024, rate_limit_per_minute=1)
    too_big = small.post(
        "/v1/ask", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413
    _assert_base_headers(too_big)
    small.get("/v1/documents")
    limited = small.get("/v1/documents")
    assert limited.status_code == 429
    _assert_base_headers(limited)


def _slow_app(*, stall_s: float, start_first: bool = False) -> Callable[..., Any]:
    """An ASGI app that answers 200 after ``stall_s`` (optionally starting its response first)."""
    import asyncio

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(stall_s)
        if not start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_slow_requests_get_504_and_admin_jobs_are_not_cut() -> None:
    client = TestClient(guards.TimeoutMiddleware(_slow_app(stall_s=0.5), seconds=0.1))
    started = time.perf_counter()
    response = client.get("/v1/ask")
    assert response.status_code == 504 and response.json() == {"detail": "request timed out"}
    assert time.perf_counter() - started < 0.45  # cut at the limit, not when the app finished
    assert client.get("/v1/admin/status").status_code == 200  # rebuilds may take minutes


def test_a_timeout_after_the_response_started_sends_no_second_one() -> None:
    import asyncio

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = guards.TimeoutMiddleware(_slow_app(stall_s=60, start_first=True), seconds=0.1)
    scope = {"type": "http", "path": "/v1/ask", "method": "GET", "headers": []}
    asyncio.run(middleware(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start"]
