"""Where policy-qa's time over the bare query embedding goes, layer by layer, over loopback.

Run ``python -m bench.overhead`` (``make bench-overhead``). It starts the real service and
a bare ASGI app (``create_app`` below) that loads the same model and index the same way
and answers, one layer more per path:

* ``POST /embed``: the query model call only, on a worker thread as the service makes it;
* ``POST /search``: the whole retriever (expansion, the model call, FAISS, BM25, fusion,
  name and year anchors);
* ``POST /answer``: plus answer extraction and the response model, serialised;
* ``POST /fastapi``: the same, as a plain FastAPI route (body validation, response model)
  without the service's dependencies and middleware.

The real service's ``/v1/ask`` adds its dependencies (state, rate limit, origin check) and
middleware (request id, metrics, security headers, CORS, body and time limits). At one
client, each layer gets its own distinct questions in alternating rounds, and the model call
itself is timed in this process after each round: the ratio of each layer to that bare call
shows what each layer costs, on the same machine at the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request

from bench.latency import (
    RunResult,
    System,
    client_session,
    distinct_questions,
    drive,
    load_questions,
    progress,
    running,
    service_env,
    summarise,
    wait_ready,
)
from index.embedding import Embedder
from index.settings import PROJECT_ROOT, Settings
from service.routes.ask import answer_question
from service.schemas import AskRequest, AskResponse

REPORT = PROJECT_ROOT / "var" / "reports" / "overhead.json"
LAYERS = ("/embed", "/search", "/answer")
PATHS = (*LAYERS, "/fastapi")


def embedding_floor(embed: Callable[[str], object], texts: Sequence[str]) -> list[float]:
    """ms per call of ``embed`` on one query, each text once (so no cache can answer), on a
    worker thread, as the service's endpoint calls it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_time_calls, embed, texts).result()


def _time_calls(embed: Callable[[str], object], texts: Sequence[str]) -> list[float]:
    for text in texts[:5]:
        embed(text)
    timings: list[float] = []
    for text in texts:
        start = time.perf_counter()
        embed(text)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def st_encode(model: Any, prompt: str) -> Callable[[str], object]:
    """A plain ``SentenceTransformer.encode`` of one query with its prompt."""
    return lambda text: model.encode([text], prompt=prompt, show_progress_bar=False)


def service_inputs(settings: Settings, questions: Sequence[str]) -> list[str]:
    """The text the service actually embeds: Simplified question plus glossary expansions."""
    from index.glossary import Glossary
    from index.retriever import expand_question

    glossary = Glossary.load(settings.glossary_path)
    enabled = settings.glossary_expansion
    return [expand_question(q, glossary, enabled=enabled)[2] for q in questions]


def create_app() -> Any:
    """The bare ASGI app: the service's own model, index and response code, no framework."""
    from index.retriever import expand_question
    from service.state import ServiceState

    state = ServiceState(Settings())
    state.load()  # before serving: uvicorn starts accepting once the factory returns
    retriever, answerer = state.retriever, state.answerer

    def layer(path: str, question: str) -> str:
        if path == "/embed":
            text = expand_question(question, retriever.glossary)[2]  # what the retriever embeds
            start = time.perf_counter()
            retriever.embedder.embed_query(text)
            return json.dumps({"timings_ms": {"embed": (time.perf_counter() - start) * 1e3}})
        if path == "/search":
            return json.dumps({"timings_ms": retriever.search(question, top_k=5).timings_ms})
        return answer_question(retriever, answerer, AskRequest(question=question))[
            1
        ].model_dump_json()

    framework = FastAPI()
    framework.state.retriever = retriever
    framework.state.answerer = answerer
    framework.post("/fastapi", response_model=AskResponse)(plain_route)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fastapi":
            await framework(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if scope["path"] in LAYERS:
            question = json.loads(body)["question"]
            payload = await asyncio.to_thread(layer, scope["path"], question)
        else:  # /readyz for wait_ready
            payload = "{}"
        data = payload.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


async def plain_route(body: AskRequest, request: Request) -> AskResponse:
    """``/v1/ask``'s work as a plain FastAPI route: no dependencies, no middleware."""
    state = request.app.state
    return (await asyncio.to_thread(answer_question, state.retriever, state.answerer, body))[1]


async def measure(
    systems: Sequence[tuple[System, str]],
    questions: Sequence[str],
    *,
    rounds: int,
    after_round: Any,
) -> dict[str, RunResult]:
    """Each system its own slice of ``questions`` per round, in alternating order."""
    results = {system.name: RunResult() for system, _ in systems}
    sessions = {system.name: client_session(url) for system, url in systems}
    try:
        for system, _ in systems:  # warm-up: thread pools, connections
            await drive(sessions[system.name], system, questions[:20], concurrency=1, top_k=5)
        size = (len(questions) - 20) // (rounds * len(systems))
        position = 20
        for number in range(rounds):
            order = systems if number % 2 == 0 else list(reversed(systems))
            asked: list[str] = []
            for system, _ in order:
                batch = questions[position : position + size]
                position += size
                asked += batch
                run = await drive(sessions[system.name], system, batch, concurrency=1, top_k=5)
                results[system.name].merge(run)
            after_round(asked)
            progress(f"round {number + 1} of {rounds}")
    finally:
        for session in sessions.values():
            await session.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per layer")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "var")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    env = service_env(args.data_dir.resolve())
    os.environ.update(env)
    settings = Settings()
    layers = [System(path.strip("/"), "", path, {}, env) for path in PATHS]
    service = System("service", "", "/v1/ask", {"mode": "hybrid"}, env)
    needed = 20 + args.requests * (len(layers) + 1)
    questions = distinct_questions(load_questions(40), needed, settings)
    logs = args.out.parent
    floors: dict[str, list[float]] = {"model_call": [], "st_encode": []}
    embedder = Embedder.from_settings(settings)

    as_served = dict(zip(questions, service_inputs(settings, questions), strict=True))

    def time_bare(asked: Sequence[str]) -> None:
        served = [as_served[question] for question in asked]
        floors["model_call"] += embedding_floor(embedder.embed_query, served)
        floors["st_encode"] += embedding_floor(
            st_encode(embedder.model, settings.query_prompt), asked
        )

    with contextlib.ExitStack() as stack:
        servers = [
            System("overhead-layers", "bench.overhead:create_app", "", {}, env),
            System("overhead-service", "service.app:create_app", "", {}, env),
        ]
        urls = {server.name: stack.enter_context(running(server, logs)).url for server in servers}
        for name, url in urls.items():
            wait_ready(url, name, 900.0, logs)
        progress("both servers ready")
        systems = [
            *((layer, urls["overhead-layers"]) for layer in layers),
            (service, urls["overhead-service"]),
        ]
        results = asyncio.run(
            measure(systems, questions, rounds=args.rounds, after_round=time_bare)
        )

    bare = float(np.median(floors["model_call"]))
    report: dict[str, Any] = {
        "load": os.getloadavg(),
        "bare": {name: summarise(samples) for name, samples in floors.items()},
        "layers": {},
    }
    print(f"bare model call (as the service makes it): p50 {bare:.2f} ms")
    print(f"bare SentenceTransformer.encode: p50 {float(np.median(floors['st_encode'])):.2f} ms")
    columns = ("p50 ms", "p95 ms", "x bare", "model call in it", "errors")
    print(f"{'layer':<10} " + " ".join(f"{c:>{max(8, len(c))}}" for c in columns))
    for name, run in results.items():
        summary = summarise(run.latencies_ms, errors=run.errors)
        inside = [stage["embed"] for stage in run.stages_ms if "embed" in stage]
        summary["embed_stage_p50_ms"] = round(float(np.median(inside)), 2) if inside else None
        summary["ratio_to_bare"] = round(summary.get("p50_ms", 0.0) / bare, 3)
        report["layers"][name] = summary
        print(
            f"{name:<10} {summary.get('p50_ms', 0):>8.2f} {summary.get('p95_ms', 0):>8.2f} "
            f"{summary['ratio_to_bare']:>8.3f} {summary['embed_stage_p50_ms'] or 0:>16.2f} "
            f"{run.errors:>8}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
