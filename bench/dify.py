"""A client that calls ``/retrieval`` the way Dify does, and reads the answers the way
Dify's code does; with the cases every Dify deployment will send.

What Dify sends and expects, from its own source (``services/external_knowledge_service.py``,
``core/helper/ssrf_proxy.py``, ``services/knowledge/retrieval/dataset_retrieval.py``):

* the URL is ``f"{endpoint}/retrieval"`` as the user typed the endpoint, so a trailing slash
  gives ``//retrieval``; POST, redirects followed;
* headers ``Content-Type: application/json`` and ``Authorization: Bearer <key>``; the body
  is ``json.dumps(params)`` (non-ASCII escaped, Python's default separators) with
  ``retrieval_setting`` (``top_k``, null without retrieval settings; ``score_threshold``,
  0.0 when switched off), ``query``, ``knowledge_id``, and ``metadata_condition`` when set;
* the registration check posts ``{"knowledge_id": "", "query": "", "retrieval_setting":
  {"top_k": 1, "score_threshold": 0.0}}`` (older versions: no body at all) and refuses the
  endpoint only on 403, 404 or 502;
* 5 s timeouts; up to 3 retries on 429, 500, 502, 503, 504 or a connection error, after
  0.5, 1 and 2 s;
* only 200 is success; the body must be a JSON object whose ``records`` is a list; each
  record becomes ``Document(page_content=content, metadata=metadata)`` (metadata an object,
  never null), Dify sorts them by score, cites ``metadata["document_id"]`` or the title,
  and an older reranker folds records with the same ``metadata["doc_id"]`` into one.

``python -m bench.dify --endpoint URL --key KEY`` replays every case against a running
service and prints one line per case; exit status 1 if any fails. The tests run the same
cases in process and against a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TIMEOUT_S = 5.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_S = (0.5, 1.0, 2.0)
"""Dify's waits before its three retries."""
REFUSING_STATUSES = frozenset({403, 404, 502})
"""The statuses Dify's registration check reads as a bad endpoint or key."""
PROBE: dict[str, Any] = {
    "knowledge_id": "",
    "query": "",
    "retrieval_setting": {"top_k": 1, "score_threshold": 0.0},
}
WHOLE_CORPUS = "policy-qa"


class DifyError(Exception):
    """What Dify raises for an answer it cannot use; the message carries the raw response."""


@dataclass(frozen=True)
class Document:
    """A record as Dify keeps it (``core.rag.models.document.Document``)."""

    page_content: str
    metadata: dict[str, Any]


@dataclass
class Calls:
    """The HTTP attempts Dify's transport made: how many, how many were retries, and each
    one's status (0: no answer, a connection error or timeout) and time."""

    attempts: int = 0
    retries: int = 0
    statuses: list[int] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)

    def record(self, status: int, started: float) -> None:
        self.statuses.append(status)
        self.times_ms.append((time.perf_counter() - started) * 1000)


def retrieval_params(
    query: str,
    *,
    knowledge_id: str = WHOLE_CORPUS,
    top_k: int | None = 5,
    score_threshold: float | None = None,
    metadata_condition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dify's request parameters, in its order; ``score_threshold`` None is "switched off"."""
    params: dict[str, Any] = {
        "retrieval_setting": {"top_k": top_k, "score_threshold": score_threshold or 0.0},
        "query": query,
        "knowledge_id": knowledge_id,
    }
    if metadata_condition:
        params["metadata_condition"] = metadata_condition
    return params


def headers(key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}


def should_retry(status: int | None) -> bool:
    """Whether Dify retries: a status it retries on, or None for a connection error or timeout."""
    return status is None or status in RETRY_STATUSES


def http_client() -> httpx.Client:
    """An HTTP client set up as Dify's transport is: 5 s timeouts, redirects followed."""
    return httpx.Client(timeout=TIMEOUT_S, follow_redirects=True)


def post(
    client: httpx.Client,
    url: str,
    *,
    key: str,
    params: dict[str, Any] | None,
    calls: Calls | None = None,
) -> httpx.Response:
    """POST as Dify's ``ssrf_proxy`` does (on a client from ``http_client``): three retries
    with its waits.

    Raises:
        httpx.HTTPError: the last attempt failed to connect or timed out.
    """
    calls = calls or Calls()
    body = None if params is None else json.dumps(params).encode()
    sent = headers(key) if body is not None else {"Authorization": f"Bearer {key}"}
    for attempt, wait in enumerate((*BACKOFF_S, None)):
        calls.attempts += 1
        calls.retries += attempt > 0
        started = time.perf_counter()
        try:
            reply = client.post(url, content=body, headers=sent)
        except (httpx.TransportError, httpx.TimeoutException):
            calls.record(0, started)
            if wait is None:
                raise
        else:
            calls.record(reply.status_code, started)
            if wait is None or not should_retry(reply.status_code):
                return reply
        time.sleep(wait)
    raise AssertionError("unreachable")  # the loop always returns or raises


async def post_async(
    client: httpx.AsyncClient,
    url: str,
    *,
    key: str,
    params: dict[str, Any],
    calls: Calls,
) -> httpx.Response | None:
    """``post`` for asyncio clients (the soak's); None when the last attempt got no answer."""
    body = json.dumps(params).encode()
    for attempt, wait in enumerate((*BACKOFF_S, None)):
        calls.attempts += 1
        calls.retries += attempt > 0
        started = time.perf_counter()
        try:
            reply = await client.post(url, content=body, headers=headers(key))
        except (httpx.TransportError, httpx.TimeoutException):
            calls.record(0, started)
            if wait is None:
                return None
        else:
            calls.record(reply.status_code, started)
            if wait is None or not should_retry(reply.status_code):
                return reply
        await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def registration_check(
    client: httpx.Client, endpoint: str, key: str, *, with_body: bool = True
) -> str | None:
    """Dify's ``check_endpoint_and_api_key``: its refusal, or None when it saves the endpoint."""
    reply = post(client, f"{endpoint}/retrieval", key=key, params=PROBE if with_body else None)
    refusals = {
        502: f"Bad Gateway: failed to connect to the endpoint: {endpoint}/retrieval",
        404: f"Not Found: failed to connect to the endpoint: {endpoint}/retrieval",
        403: "Forbidden: Authorization failed with api_key",
    }
    return refusals.get(reply.status_code)


def retrieve(
    client: httpx.Client, endpoint: str, key: str, params: dict[str, Any]
) -> list[Document]:
    """Dify's external retrieval: the records as Documents, sorted by score.

    Raises:
        DifyError: not 200, or a body Dify cannot use.
    """
    reply = post(client, f"{endpoint}/retrieval", key=key, params=params)
    if reply.status_code != 200:
        raise DifyError(f"{reply.status_code}: {reply.text}")
    body = reply.json()
    if not isinstance(body, dict) or not isinstance(body.get("records", []), list):
        raise DifyError(f"not a records object: {reply.text[:200]}")
    documents = []
    for record in body.get("records", []):
        metadata = record.get("metadata")
        if not isinstance(metadata, dict):  # null metadata breaks Dify's pipeline
            raise DifyError(f"metadata must be an object: {record!r:.200}")
        metadata["score"] = record.get("score")
        metadata["title"] = record.get("title")
        documents.append(Document(page_content=record.get("content"), metadata=metadata))
    return sorted(documents, key=lambda d: d.metadata["score"] or 0.0, reverse=True)


def citations(documents: list[Document]) -> list[str]:
    """What Dify cites for each record."""
    return [d.metadata.get("document_id") or d.metadata["title"] for d in documents]


def deduplicated(documents: list[Document]) -> list[Document]:
    """The records an older Dify reranker keeps (one per ``metadata["doc_id"]``)."""
    seen: dict[str, Document] = {}
    for document in documents:
        seen.setdefault(document.metadata["doc_id"], document)
    return list(seen.values())


# ---- the cases ----------------------------------------------------------------------------

UNICORNS_ZH = "北京独角兽企业有多少家？"
UNICORNS_EN = "How many unicorn companies does Beijing have?"
NOT_STATED = "北京独角兽企业一共融资了多少钱？"  # the documents give a count, not an amount
OFF_TOPIC = "今天北京的天气怎么样？适合去爬香山吗？"
WORK_PLAN = "most-plan-2023-41"
REVIEW = "bjsti-review-14fyp"
THRESHOLD = 0.5


@dataclass(frozen=True)
class Service:
    """Where the cases run: an HTTP client, the endpoint as registered, and a key."""

    client: httpx.Client
    endpoint: str
    key: str

    def retrieve(self, query: str, **setting: Any) -> list[Document]:
        return retrieve(self.client, self.endpoint, self.key, retrieval_params(query, **setting))


Case = Callable[[Service], None]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__] = function
    return function


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _well_formed(documents: list[Document]) -> None:
    """What every answer must give Dify: unique passage ids, a document to cite, a link."""
    ids = [d.metadata["doc_id"] for d in documents]
    _check(len(set(ids)) == len(ids), f"doc_id repeats: {ids}")
    _check(deduplicated(documents) == documents, "Dify's reranker would fold records")
    for document in documents:
        meta = document.metadata
        _check(isinstance(document.page_content, str) and document.page_content != "", "content")
        _check(0.0 <= meta["score"] <= 1.0, f"score {meta['score']} outside [0, 1]")
        for name in ("document_id", "title", "section", "start", "end", "url"):
            _check(name in meta, f"metadata lacks {name}")
        _check(f"/v1/documents/{meta['document_id']}/" in meta["url"], f"link {meta['url']}")
    _check(all(citations(documents)), "a record Dify cannot cite")


@case
def registration_with_the_right_key(service: Service) -> None:
    refusal = registration_check(service.client, service.endpoint, service.key)
    _check(refusal is None, f"refused: {refusal}")
    reply = post(service.client, f"{service.endpoint}/retrieval", key=service.key, params=PROBE)
    _check(reply.status_code == 200 and reply.json() == {"records": []}, reply.text)


@case
def registration_without_a_body(service: Service) -> None:
    refusal = registration_check(service.client, service.endpoint, service.key, with_body=False)
    _check(refusal is None, f"refused: {refusal}")


@case
def registration_with_a_wrong_key(service: Service) -> None:
    for with_body in (True, False):
        refusal = registration_check(
            service.client, service.endpoint, "wrong-key", with_body=with_body
        )
        _check(refusal is not None and refusal.startswith("Forbidden"), f"saved: {refusal}")
    reply = post(service.client, f"{service.endpoint}/retrieval", key="wrong-key", params=PROBE)
    body = reply.json()
    _check(reply.status_code == 403 and body["error_code"] == 1002, reply.text)
    _check(isinstance(body["error_msg"], str) and body["error_msg"] != "", reply.text)


@case
def chinese_question_threshold_off(service: Service) -> None:
    documents = service.retrieve(UNICORNS_ZH, top_k=5)
    _check(len(documents) == 5, f"{len(documents)} records for top_k 5")
    _well_formed(documents)
    _check("115家" in documents[0].page_content, "the 115 passage is not first")
    _check(documents[0].metadata["document_id"] == REVIEW, "wrong document")


@case
def english_question_threshold_on(service: Service) -> None:
    documents = service.retrieve(UNICORNS_EN, top_k=5, score_threshold=THRESHOLD)
    _check(bool(documents) and "115家" in documents[0].page_content, "no 115 passage")
    _check(all(d.metadata["score"] >= THRESHOLD for d in documents), "below the threshold")
    _well_formed(documents)


@case
def unanswerable_question_threshold_on(service: Service) -> None:
    for query in (NOT_STATED, OFF_TOPIC):
        documents = service.retrieve(query, top_k=5, score_threshold=THRESHOLD)
        _check(documents == [], f"{query}: {len(documents)} records above the threshold")
        closest = service.retrieve(query, top_k=5)  # threshold off: the closest, scored low
        _check(len(closest) == 5 and closest[0].metadata["score"] < THRESHOLD, query)


@case
def top_k_null_takes_the_default(service: Service) -> None:
    documents = service.retrieve(UNICORNS_ZH, top_k=None)
    _check(len(documents) == 5, f"{len(documents)} records for top_k null")


@case
def one_document_as_the_knowledge_base(service: Service) -> None:
    documents = service.retrieve(UNICORNS_ZH, knowledge_id=WORK_PLAN, top_k=3)
    _check({d.metadata["document_id"] for d in documents} == {WORK_PLAN}, "other documents")


@case
def metadata_condition_is_honoured(service: Service) -> None:
    dated = {
        "logical_operator": "and",
        "conditions": [{"name": "date", "comparison_operator": "after", "value": "2023-01-01"}],
    }
    documents = service.retrieve(UNICORNS_ZH, top_k=5, metadata_condition=dated)
    _check({d.metadata["document_id"] for d in documents} == {WORK_PLAN}, "date ignored")
    either = {
        "logical_operator": "or",
        "conditions": [
            {"name": "document_id", "comparison_operator": "is", "value": REVIEW},
            {"name": "title", "comparison_operator": "contains", "value": "Work Plan"},
        ],
    }
    documents = service.retrieve(UNICORNS_ZH, top_k=5, metadata_condition=either)
    _check({d.metadata["document_id"] for d in documents} == {REVIEW, WORK_PLAN}, "or ignored")
    neither = {
        "conditions": [
            {"name": "issuer", "comparison_operator": "not contains", "value": "科技"},
        ]
    }
    _check(service.retrieve(UNICORNS_ZH, metadata_condition=neither) == [], "not contains")


@case
def metadata_condition_refused_clearly(service: Service) -> None:
    wrong = {"conditions": [{"name": "title", "comparison_operator": "before", "value": "x"}]}
    try:
        service.retrieve(UNICORNS_ZH, metadata_condition=wrong)
    except DifyError as error:
        body = json.loads(str(error).split(": ", 1)[1])
        _check(str(error).startswith("422") and "date" in body["error_msg"], str(error))
        return
    raise AssertionError("a condition on a field it cannot apply to was accepted")


@case
def wrong_key_on_retrieval(service: Service) -> None:
    reply = post(
        service.client,
        f"{service.endpoint}/retrieval",
        key="wrong-key",
        params=retrieval_params(UNICORNS_ZH),
    )
    _check(reply.status_code == 403 and reply.json()["error_code"] == 1002, reply.text)


@case
def unknown_knowledge_id(service: Service) -> None:
    reply = post(
        service.client,
        f"{service.endpoint}/retrieval",
        key=service.key,
        params=retrieval_params(UNICORNS_ZH, knowledge_id="no-such-knowledge"),
    )
    _check(reply.status_code == 404 and reply.json()["error_code"] == 2001, reply.text)


@case
def endpoint_with_a_trailing_slash(service: Service) -> None:
    slashed = Service(service.client, f"{service.endpoint}/", service.key)
    _check(registration_check(slashed.client, slashed.endpoint, slashed.key) is None, "refused")
    documents = slashed.retrieve(UNICORNS_ZH, top_k=3)
    _check(len(documents) == 3 and "115家" in documents[0].page_content, "//retrieval")


def run_cases(service: Service) -> dict[str, str | None]:
    """Every case: None when it passes, else why it failed."""
    outcomes: dict[str, str | None] = {}
    for name, check in CASES.items():
        try:
            check(service)
        except (AssertionError, DifyError, httpx.HTTPError, KeyError, ValueError) as error:
            outcomes[name] = f"{type(error).__name__}: {error}"
        else:
            outcomes[name] = None
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="as registered in Dify, e.g. URL")
    parser.add_argument("--key", required=True, help="a key from POLICY_QA_RETRIEVAL_KEYS")
    args = parser.parse_args(argv)
    with http_client() as client:
        outcomes = run_cases(Service(client, args.endpoint.rstrip("/"), args.key))
    for name, failure in outcomes.items():
        print(
            f"{'PASS' if failure is None else 'FAIL'} {name}" + (f": {failure}" if failure else "")
        )
    failed = sum(failure is not None for failure in outcomes.values())
    print(f"{len(outcomes) - failed} of {len(outcomes)} cases pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
