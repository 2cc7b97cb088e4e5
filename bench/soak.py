"""Load and soak test of the real service over loopback.

Run ``python -m bench.soak`` (``make soak``; ``--duration`` in seconds, default 180). One run:

1. starts the real service (``uvicorn service.app:create_app --factory``, one worker) as a
   subprocess on a free loopback port, with ``POLICY_QA_DATA_DIR=var`` (the built index;
   nothing is written to it), ``HF_HUB_OFFLINE=1``, a per-client rate limit nobody reaches
   and a low per-site-key limit;
2. runs ``--clients`` concurrent clients (default 16), each with its own connection, mixing
   Chinese and English questions from ``eval/gold.jsonl`` (half of them made unique, so
   the query cache cannot answer them) with document reads (``/v1/documents``,
   ``/v1/documents/{id}``, ``/v1/chunks/{id}``); beside them one abusive client with its
   own site key (``X-Site-Key: abuser-key``) hammers ``/v1/documents`` at ``--abuser-rps``
   and must be answered 429 once past its budget, without the others ever seeing a 429;
3. beside them, ``--dify-clients`` (default 8) call ``/retrieval`` exactly as Dify does
   (``bench/dify.py``: 5 s timeouts, three retries on 429, 5xx or a timeout after 0.5, 1
   and 2 s), each waiting for its answer before the next; and from ``--burst-at`` for
   ``--burst-s`` seconds, a burst of Dify calls arrives at ``--burst-rps`` a second whatever
   the answers, beyond what the server can answer, with the same retries;
4. samples the server's resident memory (``VmRSS`` in ``/proc/PID/status``) every second;
5. prints and writes ``var/reports/soak.json``: requests, status counts, 5xx (must be 0),
   the abuser's 429s, p50/p90/p99 per endpoint kind, the memory drift after warm-up
   (median RSS of the last 30 s against the 30 s after warm-up; must stay under 10%), and
   for ``/retrieval``: Dify's calls and their attempts before, during and after the burst,
   with the time of each attempt answered 200 and each refused 429. Dify's calls outside
   the burst must all be answered, p99 within half of Dify's 5 s; no attempt may go
   unanswered (a timeout is work done for nobody, and Dify retries it); and under the burst
   the server must keep answering at least 80% of the calls a second it answered before
   it, with the burst's own refusals and retries on the same two cores. Each worker
   answers a bounded number of retrievals at once and refuses the rest at once, so the
   retries of refused calls cost it almost nothing and the load cannot snowball.

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import dify
from bench.server import free_port, rss_kb, uvicorn_process
from index.settings import PROJECT_ROOT

GOLD = PROJECT_ROOT / "eval" / "gold.jsonl"
REPORT = PROJECT_ROOT / "var" / "reports" / "soak.json"
SERVER_LOG = PROJECT_ROOT / "var" / "reports" / "soak-server.log"
SERVICE_APP = "service.app:create_app"
SITE_KEYS = ["demo-site-key", "abuser-key"]
ABUSER_KEY = "abuser-key"
CLIENT_LIMIT = 1_000_000_000  # per address: every client is 127.0.0.1, so never reached
# What each request of a normal client is (kind, weight).
MIX = (("ask_zh", 25), ("ask_en", 25), ("documents", 15), ("document", 15), ("chunk", 20))
MAX_RSS_DRIFT = 0.10
DIFY_KEY = "soak-retrieval-key"
BURST_CLIENTS = 64
HELD_UNDER_BURST = 0.8
WELL_INSIDE_MS = dify.TIMEOUT_S * 1000 / 2
"""Dify's calls must be answered within half its timeout (p99), and every one within it."""
WINDOW_S = 30.0  # memory is compared as medians over windows this long


@dataclass
class Sample:
    kind: str
    status: int  # 0: no response (connection error or client timeout)
    ms: float
    at: float


@dataclass
class DifyCall:
    """One of Dify's calls to /retrieval, retries included."""

    phase: str  # "steady" (the clients that wait for their answer) or "burst"
    at: float  # when it started, seconds into the run
    ended: float
    status: int  # the final answer's status; 0: no answer (the last attempt timed out)
    attempts: list[tuple[int, float]]  # each attempt's status (0: no answer) and time


@dataclass
class Load:
    """Everything the clients saw, and the server's memory over time."""

    samples: list[Sample] = field(default_factory=list)
    abuser: list[Sample] = field(default_factory=list)
    dify: list[DifyCall] = field(default_factory=list)
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


# ---- the server -------------------------------------------------------------------------


@contextlib.contextmanager
def server(
    port: int, *, site_limit: int, retrieval_in_flight: int | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The real service on ``port``, stopped (SIGTERM, then SIGKILL) on exit."""
    in_flight = (
        {}
        if retrieval_in_flight is None
        else {"POLICY_QA_RETRIEVAL_MAX_IN_FLIGHT": str(retrieval_in_flight)}
    )
    env = {
        **in_flight,
        "POLICY_QA_DATA_DIR": str(PROJECT_ROOT / "var"),
        "POLICY_QA_RATE_LIMIT_PER_MINUTE": str(CLIENT_LIMIT),
        "POLICY_QA_SITE_RATE_LIMIT_PER_MINUTE": str(site_limit),
        "POLICY_QA_SITE_KEYS": json.dumps(SITE_KEYS),
        "POLICY_QA_RETRIEVAL_KEYS": json.dumps([DIFY_KEY]),
    }
    with uvicorn_process(SERVICE_APP, port=port, env=env, log_path=log) as process:
        yield process


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"server exited with {process.returncode}; see {SERVER_LOG}")
            with contextlib.suppress(httpx.HTTPError):
                reply = await client.get("/readyz")
                if reply.status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout_s:.0f} s; see {SERVER_LOG}")


# ---- the clients ------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    questions: dict[str, list[str]]
    doc_ids: list[str]
    chunk_ids: list[str]


async def discover(base: str) -> Targets:
    """Questions from the gold set; document and passage ids from the service itself."""
    questions: dict[str, list[str]] = {"zh": [], "en": []}
    for line in GOLD.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            questions[row["lang"]].append(row["question"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        listing = (await client.get("/v1/documents")).json()["documents"]
        doc_ids = [d["id"] for d in listing]
        chunk_ids: list[str] = []
        for doc_id in doc_ids:
            reply = await client.get(f"/v1/documents/{doc_id}/chunks")
            chunk_ids += [c["chunk_id"] for c in reply.json()["chunks"]]
    return Targets(questions=questions, doc_ids=doc_ids, chunk_ids=chunk_ids)


def request_for(kind: str, targets: Targets, rng: random.Random) -> tuple[str, str, Any]:
    """(method, path, JSON body) for one request of ``kind``."""
    if kind.startswith("ask_"):
        question = rng.choice(targets.questions[kind[4:]])
        if rng.random() < 0.5:  # a string never sent before: the query cache cannot help
            question = f"{question} #{rng.randrange(1_000_000)}"
        return "POST", "/v1/ask", {"question": question, "top_k": 5}
    if kind == "documents":
        return "GET", "/v1/documents", None
    if kind == "document":
        return "GET", f"/v1/documents/{rng.choice(targets.doc_ids)}", None
    return "GET", f"/v1/chunks/{rng.choice(targets.chunk_ids)}", None


async def timed(client: httpx.AsyncClient, method: str, path: str, body: Any) -> tuple[int, float]:
    started = time.perf_counter()
    reply = await client.request(method, path, json=body)
    await reply.aread()
    return reply.status_code, (time.perf_counter() - started) * 1000


async def normal_client(
    base: str, targets: Targets, load: Load, deadline: float, seed: int, t0: float
) -> None:
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            method, path, body = request_for(kind, targets, rng)
            try:
                status, ms = await timed(client, method, path, body)
            except httpx.HTTPError as exc:
                load.errors[f"{kind}: {type(exc).__name__}"] += 1
                status, ms = 0, math.nan
            load.samples.append(Sample(kind, status, ms, time.monotonic() - t0))


async def abusive_client(base: str, load: Load, deadline: float, rps: float, t0: float) -> None:
    """One site hammering past its budget: it should get 429s, the others nothing."""
    headers = {"X-Site-Key": ABUSER_KEY}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as client:
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            try:
                status, ms = await timed(client, "GET", "/v1/documents", None)
            except httpx.HTTPError as exc:
                load.errors[f"abuser: {type(exc).__name__}"] += 1
                status, ms = 0, math.nan
            load.abuser.append(Sample("abuser", status, ms, time.monotonic() - t0))
            next_at += 1 / rps
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def dify_params(targets: Targets, rng: random.Random) -> dict[str, Any]:
    """A Dify request: either language, half never sent before, threshold on or off."""
    question = rng.choice(targets.questions[rng.choice(["zh", "en"])])
    if rng.random() < 0.5:
        question = f"{question} #{rng.randrange(1_000_000)}"
    return dify.retrieval_params(
        question, top_k=rng.choice([None, 3, 5]), score_threshold=rng.choice([None, 0.5])
    )


async def dify_call(
    client: httpx.AsyncClient, url: str, params: dict[str, Any], phase: str, load: Load, t0: float
) -> None:
    calls = dify.Calls()
    at = time.monotonic() - t0
    reply = await dify.post_async(client, url, key=DIFY_KEY, params=params, calls=calls)
    status = reply.status_code if reply is not None else 0
    attempts = list(zip(calls.statuses, calls.times_ms, strict=True))
    load.dify.append(DifyCall(phase, at, time.monotonic() - t0, status, attempts))


async def dify_client(
    base: str, targets: Targets, load: Load, deadline: float, seed: int, t0: float
) -> None:
    """A Dify app's retrieval node: one call at a time, each retried as Dify retries."""
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=dify.TIMEOUT_S, limits=limits) as client:
        while time.monotonic() < deadline:
            params = dify_params(targets, rng)
            await dify_call(client, f"{base}/retrieval", params, "steady", load, t0)


async def dify_burst(
    base: str, targets: Targets, load: Load, args: argparse.Namespace, t0: float
) -> None:
    """Calls arriving at ``--burst-rps`` whatever the answers: more than the server can
    answer, so it must refuse some, and Dify retries every refusal."""
    if args.burst_rps <= 0 or args.burst_s <= 0:
        return
    rng = random.Random(args.seed - 1)
    await asyncio.sleep(max(0.0, t0 + args.burst_at - time.monotonic()))
    # Many clients, a few connections each, kept for reuse as a busy Dify keeps them: one
    # client for every call would spend the load generator's CPU in its connection pool
    # (its cost grows with the requests waiting in it), and time it as the service's.
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(timeout=dify.TIMEOUT_S, limits=limits)
            )
            for _ in range(BURST_CLIENTS)
        ]
        calls: list[asyncio.Task[None]] = []
        next_at, end = time.monotonic(), time.monotonic() + args.burst_s
        while next_at < end:
            client = clients[len(calls) % len(clients)]
            params = dify_params(targets, rng)
            url = f"{base}/retrieval"
            calls.append(asyncio.create_task(dify_call(client, url, params, "burst", load, t0)))
            next_at += 1 / args.burst_rps
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*calls)


async def memory_sampler(pid: int, load: Load, deadline: float, t0: float) -> None:
    while time.monotonic() < deadline:
        value = rss_kb(pid)
        if value is not None:
            load.rss_kb.append((time.monotonic() - t0, value))
        await asyncio.sleep(1.0)


async def progress(load: Load, deadline: float, t0: float, every_s: float = 30.0) -> None:
    while time.monotonic() + every_s < deadline:
        await asyncio.sleep(every_s)
        done = len(load.samples)
        errors = sum(1 for s in load.samples if s.status == 0 or s.status >= 500)
        rss = load.rss_kb[-1][1] / 1024 if load.rss_kb else math.nan
        print(
            f"  {time.monotonic() - t0:5.0f} s: {done} requests, {errors} 5xx/errors, "
            f"abuser {sum(1 for s in load.abuser if s.status == 429)} x 429, "
            f"RSS {rss:.0f} MiB",
            flush=True,
        )


async def run_load(args: argparse.Namespace, base: str, pid: int) -> Load:
    targets = await discover(base)
    load = Load()
    t0 = time.monotonic()
    deadline = t0 + args.duration
    tasks = [
        normal_client(base, targets, load, deadline, seed=args.seed + i, t0=t0)
        for i in range(args.clients)
    ]
    tasks += [
        dify_client(base, targets, load, deadline, seed=args.seed + 1000 + i, t0=t0)
        for i in range(args.dify_clients)
    ]
    tasks.append(dify_burst(base, targets, load, args, t0))
    tasks.append(abusive_client(base, load, deadline, args.abuser_rps, t0))
    tasks.append(memory_sampler(pid, load, deadline, t0))
    tasks.append(progress(load, deadline, t0))
    await asyncio.gather(*tasks)
    return load


# ---- the report -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of the finite values; NaN if none."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(finite)))
    return finite[rank - 1]


def latency(samples: list[Sample]) -> dict[str, float]:
    values = [s.ms for s in samples]
    return {
        "count": len(samples),
        "p50_ms": round(percentile(values, 50), 1),
        "p90_ms": round(percentile(values, 90), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(percentile(values, 100), 1),
    }


def memory(rss: list[tuple[float, int]], *, warmup_s: float, duration_s: float) -> dict[str, Any]:
    """Median RSS just after warm-up, at the end, and the drift between them."""

    def median_between(start: float, end: float) -> float:
        inside = [kb for t, kb in rss if start <= t < end]
        return statistics.median(inside) if inside else math.nan

    baseline = median_between(warmup_s, warmup_s + WINDOW_S)
    final = median_between(duration_s - WINDOW_S, duration_s + 1)
    after = [(t, kb) for t, kb in rss if t >= warmup_s]
    slope = math.nan
    if len(after) > 2:
        times = [t for t, _ in after]
        values = [float(kb) for _, kb in after]
        slope = statistics.linear_regression(times, values).slope * 60 / 1024  # MiB/min
    return {
        "samples": len(rss),
        "start_mib": round(rss[0][1] / 1024, 1) if rss else None,
        "after_warmup_mib": round(baseline / 1024, 1),
        "end_mib": round(final / 1024, 1),
        "max_mib": round(max(kb for _, kb in rss) / 1024, 1) if rss else None,
        "drift": round((final - baseline) / baseline, 4),
        "slope_mib_per_min": round(slope, 2),
        "series_mib": [[round(t, 1), round(kb / 1024, 1)] for t, kb in rss],
    }


def dify_window(calls: list[DifyCall], seconds: float) -> dict[str, Any]:
    """Dify's view of a set of calls: answers, retries, and the time of each attempt
    answered 200 and of each refused with 429."""
    attempts = [attempt for call in calls for attempt in call.attempts]

    def timed(status: int) -> dict[str, float]:
        return latency([Sample("attempt", s, ms, 0.0) for s, ms in attempts if s == status])

    answered = sum(call.status == 200 for call in calls)
    return {
        "calls": len(calls),
        "answered_200": answered,
        "answered_per_s": round(answered / seconds, 1) if seconds > 0 else None,
        "final_statuses": {
            str(k): v for k, v in sorted(Counter(call.status for call in calls).items())
        },
        "attempts": len(attempts),
        "attempts_per_call": round(len(attempts) / len(calls), 3) if calls else None,
        "attempt_statuses": {str(k): v for k, v in sorted(Counter(s for s, _ in attempts).items())},
        "no_answer_attempts": sum(s == 0 for s, _ in attempts),
        "answer_ms": timed(200),
        "refusal_ms": timed(429),
    }


def dify_summary(load: Load, args: argparse.Namespace) -> dict[str, Any]:
    """Steady calls before, during and after the burst, and the burst's own calls. The burst
    lasts from its first call until its last call (retries included) has ended."""
    burst = [call for call in load.dify if call.phase == "burst"]
    steady = [call for call in load.dify if call.phase == "steady"]
    start = min((c.at for c in burst), default=args.duration)
    end = max((c.ended for c in burst), default=args.duration)
    windows = {
        "steady_before_burst": ([c for c in steady if c.ended < start], start),
        "steady_during_burst": (
            [c for c in steady if c.ended >= start and c.at < end],
            end - start,
        ),
        "steady_after_burst": ([c for c in steady if c.at >= end], args.duration - end),
        "burst": (burst, end - start),
    }
    summary = {name: dify_window(calls, seconds) for name, (calls, seconds) in windows.items()}
    summary["burst"]["window_s"] = round(end - start, 1)
    return summary


def dify_checks(summary: dict[str, Any]) -> dict[str, bool]:
    """Dify's calls outside the burst are all answered, p99 within half of Dify's timeout;
    no attempt ever goes unanswered (a timeout is work the server did for nobody); and
    under the burst the server keeps answering at least ``HELD_UNDER_BURST`` of the calls a
    second it answered before it (retries that snowballed would take that towards zero)."""
    calm = [summary["steady_before_burst"], summary["steady_after_burst"]]
    everything = [*calm, summary["steady_during_burst"], summary["burst"]]
    before = summary["steady_before_burst"]["answered_per_s"] or 0.0
    during = sum(summary[w]["answered_per_s"] or 0.0 for w in ("steady_during_burst", "burst"))
    return {
        "dify_calls_outside_the_burst_all_answered": all(
            w["calls"] > 0 and w["answered_200"] == w["calls"] for w in calm
        ),
        "dify_p99_within_half_its_timeout": all(
            w["answer_ms"]["p99_ms"] <= WELL_INSIDE_MS for w in calm
        ),
        "dify_no_attempt_unanswered": all(
            w["no_answer_attempts"] == 0
            and (w["answer_ms"]["max_ms"] < dify.TIMEOUT_S * 1000 or not w["answered_200"])
            for w in everything
        ),
        "dify_no_collapse_under_the_burst": during >= HELD_UNDER_BURST * before,
    }


def summarise(load: Load, args: argparse.Namespace) -> dict[str, Any]:
    statuses = Counter(s.status for s in load.samples)
    by_kind = {
        kind: latency([s for s in load.samples if s.kind == kind and s.status == 200])
        for kind, _ in MIX
    }
    asks = [s for s in load.samples if s.kind.startswith("ask") and s.status == 200]
    reads = [s for s in load.samples if not s.kind.startswith("ask") and s.status == 200]
    abuser = Counter(s.status for s in load.abuser)
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    server_errors += sum(n for status, n in abuser.items() if status >= 500)
    no_response = statuses.get(0, 0) + abuser.get(0, 0)
    mem = memory(load.rss_kb, warmup_s=args.warmup, duration_s=args.duration)
    retrieval = dify_summary(load, args)
    checks = {
        **dify_checks(retrieval),
        "no_5xx": server_errors == 0,
        "every_request_answered": no_response == 0,
        "abuser_gets_429": abuser.get(429, 0) > 0,
        "others_never_429": statuses.get(429, 0) == 0,
        "rss_drift_below_10pct": not math.isnan(mem["drift"]) and mem["drift"] < MAX_RSS_DRIFT,
    }
    total = len(load.samples) + len(load.abuser)
    return {
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "abusive_clients": 1,
            "abuser_rps": args.abuser_rps,
            "site_rate_limit_per_minute": args.site_limit,
            "mix": dict(MIX),
            "seed": args.seed,
            "dify_clients": args.dify_clients,
            "burst": {"at_s": args.burst_at, "seconds": args.burst_s, "rps": args.burst_rps},
            "retrieval_max_in_flight": args.retrieval_max_in_flight,
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "requests": {
            "total": total,
            "normal": len(load.samples),
            "abuser": len(load.abuser),
            "per_second": round(total / args.duration, 1),
            "normal_statuses": {str(k): v for k, v in sorted(statuses.items())},
            "abuser_statuses": {str(k): v for k, v in sorted(abuser.items())},
            "server_errors_5xx": server_errors,
            "no_response": no_response,
            "errors": dict(load.errors),
        },
        "latency_ms": {**by_kind, "ask": latency(asks), "read": latency(reads)},
        "retrieval": retrieval,
        "memory": mem,
        "checks": checks,
        "passed": all(checks.values()),
    }


def print_report(report: dict[str, Any]) -> None:
    r, mem = report["requests"], report["memory"]
    print(
        f"\n{r['total']} requests in {report['config']['duration_s']} s "
        f"({r['per_second']}/s) from {report['config']['clients']} clients + 1 abuser"
    )
    print(f"  statuses {r['normal_statuses']}, abuser {r['abuser_statuses']}")
    print(f"  5xx {r['server_errors_5xx']}, no response {r['no_response']}")
    print(f"  {'kind':<10} {'count':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, row in report["latency_ms"].items():
        print(
            f"  {kind:<10} {row['count']:>6} {row['p50_ms']:>8} {row['p90_ms']:>8} "
            f"{row['p99_ms']:>8} {row['max_ms']:>8}"
        )
    print("  /retrieval as Dify calls it (ms: attempts answered 200 / refused 429):")
    print(
        f"  {'window':<20} {'calls':>6} {'200':>6} {'200/s':>6} {'attempts':>8} "
        f"{'per call':>8} {'200 p50':>8} {'p99':>7} {'max':>7} {'429 p99':>8}  final statuses"
    )
    for name, w in report["retrieval"].items():
        ok, refused = w["answer_ms"], w["refusal_ms"]
        print(
            f"  {name:<20} {w['calls']:>6} {w['answered_200']:>6} {w['answered_per_s'] or 0:>6} "
            f"{w['attempts']:>8} {w['attempts_per_call'] or 0:>8} {ok['p50_ms']:>8} "
            f"{ok['p99_ms']:>7} {ok['max_ms']:>7} {refused['p99_ms']:>8}  {w['final_statuses']}"
        )
    print(
        f"  RSS {mem['start_mib']} MiB at start, {mem['after_warmup_mib']} after warm-up, "
        f"{mem['end_mib']} at the end (max {mem['max_mib']}): drift {mem['drift']:+.1%}, "
        f"slope {mem['slope_mib_per_min']} MiB/min"
    )
    for name, ok in report["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'} {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before RSS counts")
    parser.add_argument("--clients", type=int, default=16, help="concurrent normal clients")
    parser.add_argument("--abuser-rps", type=float, default=20.0, help="the abuser's rate")
    parser.add_argument("--site-limit", type=int, default=60, help="per site key, per minute")
    parser.add_argument("--dify-clients", type=int, default=8, help="Dify-like /retrieval callers")
    parser.add_argument("--burst-at", type=float, default=60.0, help="seconds into the run")
    parser.add_argument("--burst-s", type=float, default=20.0, help="how long the burst lasts")
    parser.add_argument("--burst-rps", type=float, default=150.0, help="burst calls a second")
    parser.add_argument(
        "--retrieval-max-in-flight",
        type=int,
        default=None,
        help="the server's POLICY_QA_RETRIEVAL_MAX_IN_FLIGHT (default: its own default)",
    )
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.duration < args.warmup + 2 * WINDOW_S:
        parser.error(f"--duration must be at least --warmup + {2 * WINDOW_S:.0f} s")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with server(
        port,
        site_limit=args.site_limit,
        retrieval_in_flight=args.retrieval_max_in_flight,
        log=SERVER_LOG,
    ) as process:
        print(f"starting the service on {base} (log: {SERVER_LOG})", flush=True)
        asyncio.run(wait_ready(base, process, args.ready_timeout))
        print(f"ready; {args.duration:.0f} s of load", flush=True)
        load = asyncio.run(run_load(args, base, process.pid))
        exited = process.poll()
    report = summarise(load, args)
    report["server_exited_during_run"] = exited is not None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_report(report)
    print(f"wrote {args.out}")
    return 0 if report["passed"] and exited is None else 1


if __name__ == "__main__":
    sys.exit(main())
