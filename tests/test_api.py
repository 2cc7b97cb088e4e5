"""The HTTP API through the real app lifespan, model and index."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from index.settings import Settings
from service.schemas import CLEAN_TEXT_PATTERN, clean_text
from tests.apps import StartApp

ADMIN = {"Authorization": "Bearer test-admin-key"}
QUESTIONS = {
    "zh": "北京独角兽企业有多少家？",
    "zh-Hant": "北京獨角獸企業有多少家？",
    "en": "How many unicorn companies does Beijing have?",
    "mixed": "北京的 unicorn companies 有多少家？",
}


def ask(client: TestClient, question: str, **extra: object) -> dict[str, object]:
    reply = client.post("/v1/ask", json={"question": question, **extra})
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


@pytest.mark.parametrize("kind", sorted(QUESTIONS))
def test_ask_in_every_language(any_client: TestClient, kind: str) -> None:
    body = ask(any_client, QUESTIONS[kind], top_k=3)
    assert body["language_detail"] == kind
    assert body["language"] == ("en" if kind == "en" else "zh")
    passages = body["passages"]
    assert isinstance(passages, list) and len(passages) == 3
    assert any("115家" in p["text"] for p in passages)
    assert body["no_answer"] is False
    answer = body["answer"]
    assert isinstance(answer, dict) and "115家" in answer["text"]


def test_passages_quote_the_document_exactly(any_client: TestClient) -> None:
    body = ask(any_client, "技术合同成交额达到多少？", top_k=10)
    texts: dict[str, str] = {}
    for passage in body["passages"]:  # type: ignore[attr-defined]
        doc_id = passage["doc_id"]
        if doc_id not in texts:
            texts[doc_id] = any_client.get(f"/v1/documents/{doc_id}").json()["text"]
        assert texts[doc_id][passage["start"] : passage["end"]] == passage["text"]
        for span in passage["highlights"]:
            assert passage["start"] <= span["start"] < span["end"] <= passage["end"]
        assert passage["section"] is not None


def test_answer_cites_only_returned_passages(client: TestClient) -> None:
    questions = [*QUESTIONS.values(), "中关村论坛有哪些功能？", "What is Zhuanguoguo?"]
    for question in [*questions, "Which body published the review of Beijing's sci-tech work?"]:
        body = ask(client, question, top_k=5)
        passages = {p["rank"]: p for p in body["passages"]}  # type: ignore[attr-defined]
        answer = body["answer"]
        assert isinstance(answer, dict), question
        assert set(answer["citations"]) <= set(passages)
        for rank in answer["citations"]:
            assert f"[{rank}]" in answer["text"]
        for quote in answer["quotes"]:
            text = client.get(f"/v1/documents/{quote['doc_id']}").json()["text"]
            assert text[quote["start"] : quote["end"]] == quote["text"]
            if quote["rank"] is not None:  # the quote lies in the passage it cites
                passage = passages[quote["rank"]]
                assert passage["start"] <= quote["start"] < quote["end"] <= passage["end"]
                assert {"start": quote["start"], "end": quote["end"]} in passage["highlights"]


@pytest.mark.parametrize(
    "question",
    [
        "上海2024年的研发经费投入强度是多少？",
        "How many unicorn companies are headquartered in Shanghai?",
    ],
)
def test_unanswerable_questions(client: TestClient, question: str) -> None:
    body = ask(client, question)
    assert body["no_answer"] is True and body["answer"] is None and body["passages"]
    not_stated = body["not_stated"]
    assert isinstance(not_stated, dict)
    first = not_stated["findings"][0]
    assert first == {
        "reason": "unknown_name",
        "detail": "上海" if "上海" in question else "Shanghai",
    }
    # Said in the question's language.
    chinese = re.search(r"[\u4e00-\u9fff]", question) is not None
    assert not_stated["message"].startswith("文件中没有说明" if chinese else "The documents do not")


def test_filters_and_modes(any_client: TestClient) -> None:
    body = ask(any_client, "技术合同成交额", doc_ids=["most-plan-2023-41"], top_k=5)
    assert {p["doc_id"] for p in body["passages"]} == {"most-plan-2023-41"}  # type: ignore[attr-defined]
    for mode in ("dense", "lexical", "hybrid"):
        assert ask(any_client, "独角兽", mode=mode)["passages"]


def test_documents_and_chunks(any_client: TestClient) -> None:
    catalog = any_client.get("/v1/documents").json()["documents"]
    assert {d["id"] for d in catalog} == {"bjsti-review-14fyp", "most-plan-2023-41"}
    detail = any_client.get("/v1/documents/most-plan-2023-41").json()
    assert (
        detail["number"] == "国科发规〔2023〕41号" and len(detail["text"]) == detail["characters"]
    )
    chunks = any_client.get("/v1/documents/most-plan-2023-41/chunks").json()["chunks"]
    assert len(chunks) == detail["passages"]
    one = any_client.get(f"/v1/chunks/{chunks[3]['chunk_id']}").json()
    assert detail["text"][one["start"] : one["end"]] == one["text"]
    assert any_client.get("/v1/documents/nope").status_code == 404
    assert any_client.get("/v1/chunks/nope:0001").status_code == 404
    assert any_client.get("/v1/documents/..%2F..%2Fetc").status_code in (404, 422)


BAD_ASKS = [
    ({"question": ""}, 422),
    ({"question": "   \n\t "}, 422),
    ({"question": "x" * 3000}, 422),
    ({"question": 42}, 422),
    ({"question": ["北京"]}, 422),
    ({}, 422),
    ({"question": "北京", "top_k": 0}, 422),
    ({"question": "北京", "top_k": 1_000_000}, 422),
    ({"question": "北京", "top_k": "five"}, 422),
    ({"question": "北京", "doc_ids": ["unknown-doc"]}, 422),
    ({"question": "北京", "doc_ids": ["../../etc/passwd"]}, 422),
    ({"question": "北京", "mode": "magic"}, 422),
    ({"question": "北京\x00\x07"}, 422),
    ({"question": "北京", "surprise": True}, 422),
]


@pytest.mark.parametrize(("payload", "status"), BAD_ASKS)
def test_bad_input_gets_a_precise_4xx(client: TestClient, payload: object, status: int) -> None:
    reply = client.post("/v1/ask", json=payload)
    assert reply.status_code == status, reply.text
    assert "detail" in reply.json()


def test_malformed_and_huge_bodies(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    assert client.post("/v1/ask", content=b"{not json", headers=headers).status_code == 422
    assert client.post("/v1/ask", content=b"\xff\xfe", headers=headers).status_code == 422
    lone_surrogate = b'{"question": "\\ud800 \xe5\x8c\x97"}'
    assert client.post("/v1/ask", content=lone_surrogate, headers=headers).status_code == 422
    huge = '{"question": "' + "北" * 100_000 + '"}'
    reply = client.post("/v1/ask", content=huge.encode(), headers=headers)
    assert reply.status_code == 413 and "detail" in reply.json()
    assert (
        client.post(
            "/v1/ask", content=b"question=x", headers={"content-type": "text/plain"}
        ).status_code
        == 422
    )


def test_admin_requires_a_valid_key(any_client: TestClient) -> None:
    assert any_client.get("/v1/admin/status").status_code == 401
    assert (
        any_client.get("/v1/admin/status", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    assert (
        any_client.get("/v1/admin/status", headers={"Authorization": "Basic x"}).status_code == 401
    )
    assert any_client.get("/v1/admin/status", headers=ADMIN).json()["documents"] >= 2


def _upload(client: TestClient, name: str, data: bytes, doc_id: str = "quantum-plan") -> object:
    return client.post(
        "/v1/admin/documents",
        headers=ADMIN,
        files={"file": (name, data, "application/octet-stream")},
        data={"id": doc_id, "title_zh": "量子信息发展方案", "title_en": "Quantum plan"},
    )


def test_admin_add_ask_delete(any_client: TestClient) -> None:
    text = (
        "一、总体要求\n为加快建设量子信息科学中心，制定本方案。\n"
        "二、主要措施\n支持墨子量子实验室建设量子计算原型机，到2027年建成百比特级量子计算平台。"
    ).encode()
    before = any_client.get("/v1/admin/status", headers=ADMIN).json()
    reply = _upload(any_client, "quantum.txt", text)
    assert reply.status_code == 201, reply.text  # type: ignore[attr-defined]
    assert _upload(any_client, "quantum.txt", text).status_code == 409  # type: ignore[attr-defined]
    body = ask(any_client, "墨子量子实验室要建成什么平台？", top_k=3)
    assert body["passages"][0]["doc_id"] == "quantum-plan"  # type: ignore[index]
    assert any_client.delete("/v1/admin/documents/quantum-plan", headers=ADMIN).status_code == 200
    body = ask(any_client, "墨子量子实验室要建成什么平台？", top_k=10)
    assert all(p["doc_id"] != "quantum-plan" for p in body["passages"])  # type: ignore[attr-defined]
    assert (
        any_client.get("/v1/admin/status", headers=ADMIN).json()["passages"] == before["passages"]
    )
    assert any_client.delete("/v1/admin/documents/quantum-plan", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("evil.exe", b"MZ", 415),
        ("noext", b"text", 415),
        ("broken.pdf", b"%PDF-1.7 truncated", 422),
        ("empty.txt", b"   ", 422),
        ("latin1.txt", "caf\xe9".encode("latin-1"), 422),
    ],
)
def test_bad_uploads_leave_the_index_unchanged(
    any_client: TestClient, name: str, data: bytes, status: int
) -> None:
    before = any_client.get("/v1/admin/status", headers=ADMIN).json()
    assert _upload(any_client, name, data, doc_id="bad-upload").status_code == status  # type: ignore[attr-defined]
    assert any_client.get("/v1/admin/status", headers=ADMIN).json() == before


def test_huge_upload_is_refused(start_app: StartApp) -> None:
    with start_app("copy", max_upload_bytes=4096) as other:
        reply = _upload(other, "big.txt", b"x" * 10_000)
        assert reply.status_code == 413  # type: ignore[attr-defined]


def test_rebuild_under_concurrent_asks_drops_nothing(client: TestClient) -> None:
    failures: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status = client.post("/v1/ask", json={"question": "独角兽企业数量"}).status_code
            if status != 200:
                failures.append(status)

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        assert client.post("/v1/admin/rebuild", headers=ADMIN).status_code == 200
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []


def test_operations(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["passages"] > 0
    assert ready["precision"] in {"float32", "bfloat16"}
    ask(client, "独角兽")
    metrics = client.get("/metrics").text
    assert 'policy_qa_requests_total{method="POST",route="/v1/ask",status="200"}' in metrics
    assert "policy_qa_retrieval_stage_seconds_bucket" in metrics
    reply = client.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert reply.headers["x-request-id"] == "abc123"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    page = client.get("/")
    assert "frame-ancestors" in page.headers["content-security-policy"]
    docs = client.get("/openapi.json").json()
    examples = docs["components"]["schemas"]["AskRequest"]["examples"]
    assert any("独角兽" in e["question"] for e in examples)


def test_the_schema_documents_every_error(client: TestClient) -> None:
    """F1, F2: every operation lists the 4xx/5xx it answers, each with ErrorBody, whose
    ``detail`` is a message or FastAPI's list of problems; F3: the text rule is stated."""
    docs = client.get("/openapi.json").json()
    for path, operations in docs["paths"].items():
        body = "DifyErrorBody" if path == "/retrieval" else "ErrorBody"  # Dify's own dialect
        for method, operation in operations.items():
            errors = {k: v for k, v in operation["responses"].items() if int(k) >= 400}
            assert errors, f"{method} {path} lists no error"
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{body}"}, (
                    f"{method} {path} {status}"
                )
    assert set(docs["paths"]["/v1/ask"]["post"]["responses"]) >= {"400", "413", "422", "503"}
    detail = docs["components"]["schemas"]["ErrorBody"]["properties"]["detail"]["anyOf"]
    assert {"type": "string"} in detail
    schemas = docs["components"]["schemas"]
    upload = next(v for k, v in schemas.items() if k.startswith("Body_add_document"))
    for properties, name in [
        (schemas["AskRequest"]["properties"], "question"),
        (upload["properties"], "title_zh"),
        (upload["properties"], "title_en"),
    ]:
        assert properties[name]["pattern"] == CLEAN_TEXT_PATTERN, name


def _accepted(text: str) -> bool:
    try:
        clean_text(text, field="text")
    except ValueError:
        return False
    return True


@hypothesis.settings(max_examples=300, derandomize=True, database=None)
@given(
    text=st.text(
        st.one_of(
            st.characters(exclude_categories=["Cs"]), st.sampled_from(" \t\n\r\x0b\x85\u3000")
        ),
        max_size=8,
    )
)
def test_the_schema_pattern_says_what_clean_text_accepts(text: str) -> None:
    """The documented pattern and the enforced rule agree (surrogates aside: JSON Schema
    patterns cannot name them)."""
    assert (re.search(CLEAN_TEXT_PATTERN, text) is not None) == _accepted(text)


@pytest.mark.parametrize("char", [" ", "\t", "\n", "\u3000", "\u00a0", "\u2028", "\ufeff", "\x85"])
def test_the_schema_pattern_on_blank_and_edge_characters(char: str) -> None:
    for text in (char, char * 3, f"{char}a{char}"):
        assert (re.search(CLEAN_TEXT_PATTERN, text) is not None) == _accepted(text), repr(text)


def test_origin_allow_list(client: TestClient) -> None:
    allowed = {"Origin": "https://allowed.example"}
    reply = client.post("/v1/ask", json={"question": "独角兽"}, headers=allowed)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "https://allowed.example"
    evil = {"Origin": "https://evil.example"}
    assert client.post("/v1/ask", json={"question": "独角兽"}, headers=evil).status_code == 403
    preflight = client.options(
        "/v1/ask",
        headers={**evil, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture
def limited(settings: Settings, start_app: StartApp) -> Iterator[TestClient]:
    with start_app(settings, rate_limit_per_minute=3) as other:
        yield other


def test_rate_limit_answers_429_with_retry_after(limited: TestClient) -> None:
    statuses = [limited.get("/v1/documents").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    reply = limited.get("/v1/documents")
    assert reply.status_code == 429
    assert 1 <= int(reply.headers["retry-after"]) <= 60
    assert limited.get("/healthz").status_code == 200  # probes are never limited


def test_not_ready_answers_503(settings: Settings, start_app: StartApp, tmp_path: Path) -> None:
    broken = settings.model_copy(
        update={"corpus_dir": tmp_path / "no-corpus", "data_dir": tmp_path}
    )
    with start_app(broken) as other:
        reply = other.get("/readyz")
        assert reply.status_code == 503 and "catalog not found" in reply.json()["detail"]
        assert other.post("/v1/ask", json={"question": "独角兽"}).status_code == 503
        assert other.get("/healthz").status_code == 200
