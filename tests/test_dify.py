"""Dify's External Knowledge API: Dify's requests replayed byte for byte, and the answers
read the way Dify's code reads them (``bench/dify.py``), in process and against the real
server; the error dialect; and metadata conditions worked out by hand."""

from __future__ import annotations

import json
from typing import Any, get_args

import httpx
import pytest
from fastapi.testclient import TestClient

from bench import dify
from index.documents import DocumentMeta
from index.errors import InvalidInputError, RateLimitedError
from index.metadata_filter import FIELDS, OPERATORS, Condition, Operator, select_documents
from index.settings import Settings
from service.guards import InFlightLimit
from service.schemas import MetadataField
from tests.apps import guards_only
from tests.conftest import LiveService

KEY = "test-retrieval-key"


def test_requests_are_dify_bytes() -> None:
    """What goes on the wire is Dify's ``json.dumps(params)``: its key order, Python's
    separators, non-ASCII escaped; null top_k and 0.0 for a threshold switched off."""
    body = json.dumps(dify.retrieval_params("独角兽", top_k=None)).encode()
    assert body == (
        b'{"retrieval_setting": {"top_k": null, "score_threshold": 0.0}, '
        b'"query": "\\u72ec\\u89d2\\u517d", "knowledge_id": "policy-qa"}'
    )
    assert json.dumps(dify.PROBE).encode() == (
        b'{"knowledge_id": "", "query": "", "retrieval_setting": {"top_k": 1, '
        b'"score_threshold": 0.0}}'
    )
    assert dify.headers(KEY) == {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
    }


@pytest.mark.parametrize("name", list(dify.CASES))
def test_dify_contract_in_process(any_client: TestClient, name: str) -> None:
    """Every case, on each store."""
    service = dify.Service(any_client, "http://testserver", KEY)  # type: ignore[arg-type]
    dify.CASES[name](service)


def test_dify_client_against_the_real_server(live_service: LiveService) -> None:
    """The Dify-faithful client, over loopback, against the server ``make serve`` runs."""
    with dify.http_client() as http:
        outcomes = dify.run_cases(dify.Service(http, live_service.url, KEY))
    assert outcomes == dict.fromkeys(dify.CASES), outcomes


def test_retries_follow_dify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three retries on 429/5xx or a connection error, after 0.5, 1 and 2 s; none on 4xx."""
    waits: list[float] = []
    monkeypatch.setattr("bench.dify.time.sleep", waits.append)
    answers = iter([503, 429, 502, 200])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={"records": []})

    calls = dify.Calls()
    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        reply = dify.post(http, "http://x/retrieval", key=KEY, params={}, calls=calls)
        assert reply.status_code == 200 and waits == [0.5, 1.0, 2.0]
        assert (calls.attempts, calls.retries) == (4, 3)
        waits.clear()
        answers = iter([500, 500, 500, 500])
        assert dify.post(http, "http://x/retrieval", key=KEY, params={}).status_code == 500
        assert waits == [0.5, 1.0, 2.0]
        waits.clear()
        answers = iter([403])
        assert dify.post(http, "http://x/retrieval", key=KEY, params={}).status_code == 403
        assert waits == []


# ---- the error dialect --------------------------------------------------------------------


def _post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/retrieval", content=json.dumps(body), headers=headers or {})


def test_every_failure_speaks_difys_dialect(client: TestClient) -> None:
    auth = dify.headers(KEY)
    cases = [
        (_post(client, dify.PROBE), 403, 1001),  # no Authorization header
        (_post(client, dify.PROBE, {"Authorization": KEY}), 403, 1001),  # no scheme
        (_post(client, dify.PROBE, dify.headers("wrong")), 403, 1002),
        (_post(client, {"query": "独角兽"}, auth), 422, 422),  # no knowledge_id
        (_post(client, {**dify.PROBE, "retrieval_setting": {"top_k": 0}}, auth), 422, 422),
        (client.get("/retrieval", headers=auth), 405, 405),
    ]
    for reply, status, code in cases:
        body = reply.json()
        assert (reply.status_code, body["error_code"]) == (status, code), reply.text
        assert set(body) == {"error_code", "error_msg"} and body["error_msg"]
        assert "www-authenticate" not in reply.headers
    # Everywhere else the API's own dialect is unchanged.
    assert set(client.get("/v1/documents/no-such-doc").json()) == {"detail"}


def test_a_key_is_refused_with_403_when_none_is_configured(settings: Settings) -> None:
    off = guards_only(settings, retrieval_keys=[], admin_key=None)
    reply = off.post("/retrieval", json=dify.PROBE, headers=dify.headers(KEY))
    assert reply.status_code == 403 and reply.json()["error_code"] == 1002


def test_the_schema_documents_difys_error_body(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/retrieval"]["post"]
    for status in ("403", "404", "422"):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/DifyErrorBody"}


# ---- metadata conditions, by hand ----------------------------------------------------------

REVIEW = DocumentMeta(
    id="review", title_zh="回顾", title_en="Review", source="", issuer="北京市科委", date=None
)
PLAN = DocumentMeta(
    id="plan",
    title_zh="工作方案",
    title_en="Work Plan",
    source="",
    issuer="科技部",
    date="2023-05-08",
)
DOCS = [REVIEW, PLAN]


def _select(*conditions: tuple[Any, str, Any], join: str = "and") -> list[str]:
    return select_documents(DOCS, [Condition(*c) for c in conditions], join)  # type: ignore[arg-type]


def test_text_operators() -> None:
    assert _select(("title", "contains", "plan")) == ["plan"]  # either language, any case
    assert _select(("title", "not contains", "plan")) == ["review"]
    assert _select(("title", "start with", "工作")) == ["plan"]
    assert _select(("title", "end with", "view")) == ["review"]
    assert _select(("document_id", "is", "plan")) == ["plan"]
    assert _select(("document_id", "is not", "plan")) == ["review"]
    assert _select(("document_id", "in", ["plan", "other"])) == ["plan"]
    assert _select(("document_id", "in", "plan, review")) == ["review", "plan"]
    assert _select(("document_id", "not in", ["plan"])) == ["review"]
    assert _select(("date", "empty", None)) == ["review"]
    assert _select(("date", "not empty", None)) == ["plan"]
    assert _select(("issuer", "contains", "科")) == ["review", "plan"]
    assert _select(("issuer", "contains", "科技部"), ("date", "empty", None)) == []
    assert _select(("issuer", "contains", "科技部"), ("date", "empty", None), join="or") == [
        "review",
        "plan",
    ]
    assert _select(("issuer", "contains", "x"), ("title", "contains", "回顾"), join="or") == [
        "review"
    ]
    assert _select((["issuer", "title"], "contains", "科委")) == ["review"]  # any of them
    assert select_documents(DOCS, []) == ["review", "plan"]


def test_date_operators() -> None:
    """The plan is dated 2023-05-08; the review has no date, so it meets no comparison."""
    assert _select(("date", "after", "2023-01-01")) == ["plan"]
    assert _select(("date", "before", "2023-05-08")) == []
    assert _select(("date", "≤", "2023-05-08")) == ["plan"]
    assert _select(("date", "=", "2023-05-08T10:00:00")) == ["plan"]
    assert _select(("date", "≠", "2023-05-08")) == ["review"]
    assert _select(("date", ">", 1672531200)) == ["plan"]  # 2023-01-01 as a Unix timestamp
    assert _select(("date", "<", 1672531200)) == []
    assert _select(("date", "≥", "2023-05-09")) == []


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (("category", "is", "x"), "unknown field category"),
        (("title", "like", "x"), "unknown comparison_operator 'like'"),
        (("title", "before", "2023-01-01"), "applies to the field date only"),
        (("date", "after", "last year"), "needs a date"),
        (("document_id", "in", []), "needs a list"),
        (("title", "contains", None), "needs a text value"),
    ],
)
def test_conditions_that_cannot_apply_are_refused(
    condition: tuple[Any, str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _select(condition)


def test_the_schema_names_the_filterable_fields() -> None:
    assert set(get_args(MetadataField)) == set(FIELDS)
    assert set(get_args(Operator)) == set(OPERATORS)


# ---- a bounded queue: Dify's timeout, and its retries ---------------------------------------


def test_in_flight_limit_refuses_one_more() -> None:
    slots = InFlightLimit(2)
    with slots.slot(), slots.slot():
        with pytest.raises(RateLimitedError) as refused, slots.slot():
            pass
        assert refused.value.retry_after == 1 and slots.in_flight == 2
    assert slots.in_flight == 0
    with pytest.raises(ValueError), slots.slot():  # freed after an error inside too
        raise ValueError
    assert slots.in_flight == 0


def test_retrieval_beyond_its_slots_is_refused_at_once(client: TestClient) -> None:
    slots: InFlightLimit = client.app.state.retrieval_slots  # type: ignore[attr-defined]
    body = dify.retrieval_params(dify.UNICORNS_ZH)
    taken = slots.in_flight
    slots.in_flight = slots.limit  # every slot busy
    try:
        reply = _post(client, body, dify.headers(KEY))
    finally:
        slots.in_flight = taken
    assert reply.status_code == 429 and reply.headers["retry-after"] == "1"
    assert reply.json()["error_code"] == 429
    assert _post(client, body, dify.headers(KEY)).status_code == 200
