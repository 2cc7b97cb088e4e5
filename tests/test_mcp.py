"""The MCP server, driven by the official SDK's own client against the real server: over
streamable HTTP at /mcp under the running service, and over stdio as a desktop assistant
starts it. Its guard (key, origin, rate limit) is also checked in process."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bench.server import OFFLINE_ENV
from index.settings import Settings
from service.mcp import CATALOG_URI
from tests.apps import guards_only
from tests.conftest import LiveService, private_copy, service_env

KEY = "test-retrieval-key"
ALLOWED = "https://allowed.example"
QUESTIONS = ["北京独角兽企业有多少家？", "How many unicorn companies does Beijing have?"]
Session = Callable[[Client], Coroutine[Any, Any, None]]


async def _listed_and_answered(client: Client) -> None:
    """Both tools and the resource listed; the 115 passage found in both languages."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"search_policy", "get_document"}
    schema = tools["search_policy"].input_schema["properties"]
    assert set(schema) == {"question", "top_k", "doc_ids"}
    resources = [str(r.uri) for r in (await client.list_resources()).resources]
    assert resources == [CATALOG_URI]
    for question in QUESTIONS:
        result = await client.call_tool("search_policy", {"question": question, "top_k": 3})
        found = result.structured_content
        assert not result.is_error and found is not None
        assert not found["no_answer"] and "115家" in found["answer"]["text"]
        first = found["passages"][0]
        assert "115家" in first["text"] and first["doc_id"] == "bjsti-review-14fyp"
        assert {"chunk_id", "section", "start", "end", "score"} <= set(first)


async def _documents(client: Client) -> None:
    catalog = json.loads((await client.read_resource(CATALOG_URI)).contents[0].text)  # type: ignore[union-attr]
    ids = [d["id"] for d in catalog["documents"]]
    assert ids == ["bjsti-review-14fyp", "most-plan-2023-41"]
    result = await client.call_tool("get_document", {"doc_id": "most-plan-2023-41"})
    document = result.structured_content
    assert document is not None and document["date"] == "2023-05-08"
    in_plan = {"question": "独角兽", "doc_ids": ["most-plan-2023-41"]}
    passage = (await client.call_tool("search_policy", in_plan)).structured_content
    assert passage is not None
    quoted = passage["passages"][0]
    assert quoted["doc_id"] == "most-plan-2023-41"
    assert document["text"][quoted["start"] : quoted["end"]] == quoted["text"]
    unknown = await client.call_tool("get_document", {"doc_id": "no-such-doc"})
    assert unknown.is_error and "not found" in unknown.content[0].text  # type: ignore[union-attr]
    too_many = await client.call_tool("search_policy", {"question": "独角兽", "top_k": 50})
    assert too_many.is_error


def _over_http(
    url: str, session: Session, headers: dict[str, str], statuses: list[int] | None = None
) -> None:
    """Run ``session`` with the SDK client over streamable HTTP; ``statuses`` collects the
    HTTP statuses it was answered with."""
    statuses = [] if statuses is None else statuses

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    async def run() -> None:
        hooks = {"response": [record]}
        async with (
            httpx2.AsyncClient(headers=headers, event_hooks=hooks, timeout=60) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            await session(client)

    asyncio.run(run())


def test_streamable_http_under_the_running_service(live_service: LiveService) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    _over_http(live_service.url, _listed_and_answered, auth)
    _over_http(live_service.url, _documents, {**auth, "Origin": ALLOWED})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-key"}, 401),
        ({"Authorization": f"Bearer {KEY}", "Origin": "https://foreign.example"}, 403),
    ],
    ids=["no key", "wrong key", "foreign origin"],
)
def test_http_refuses_wrong_keys_and_foreign_origins(
    live_service: LiveService, headers: dict[str, str], status: int
) -> None:
    seen: list[int] = []

    async def never(client: Client) -> None:
        raise AssertionError("connected")

    with pytest.raises(BaseExceptionGroup) as refused:
        _over_http(live_service.url, never, headers, seen)
    assert refused.group_contains(MCPError) and not refused.group_contains(AssertionError)
    assert seen and set(seen) == {status}, seen  # every answer the SDK client got


def test_stdio_as_a_desktop_assistant_starts_it(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = private_copy(settings, tmp_path_factory.mktemp("stdio"))
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "service.mcp"],
        env={**OFFLINE_ENV, **service_env(own)},
        cwd=Path(__file__).resolve().parents[1],
    )

    async def run() -> None:
        async with Client(server, read_timeout_seconds=180) as client:
            await _listed_and_answered(client)
            await _documents(client)

    asyncio.run(run())


# ---- the guard, in process ----------------------------------------------------------------


def test_guard_asks_for_a_key_then_an_allowed_origin(settings: Settings) -> None:
    app = guards_only(settings)
    reply = app.post("/mcp", json={})
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    for key in ("wrong", "test-admin-key"[:-1]):
        assert (
            app.post("/mcp", json={}, headers={"Authorization": f"Bearer {key}"}).status_code == 401
        )
    foreign = {"Authorization": f"Bearer {KEY}", "Origin": "https://foreign.example"}
    reply = app.post("/mcp", json={}, headers=foreign)
    assert reply.status_code == 403 and "not allowed" in reply.json()["detail"]


def test_guard_applies_the_rate_limit(settings: Settings) -> None:
    """Counted before the key is checked: guessing keys spends the budget too."""
    app = guards_only(settings, rate_limit_per_minute=2)
    wrong = {"Authorization": "Bearer wrong"}
    statuses = [app.post("/mcp", json={}, headers=wrong).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
