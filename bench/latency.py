"""Latency benchmark of the real service against a naive tutorial pipeline, over loopback.

Run ``python -m bench.latency`` (``make bench``). One run:

1. starts the real service (``uvicorn service.app:create_app --factory --workers 1``) and the
   naive baseline (``bench/baseline.py``) as subprocesses on free loopback ports;
2. sends both the same mixed Chinese/English questions (from ``eval/gold.jsonl``) at 1 and 8
   concurrent clients. Every timed request carries a question string not sent before, so
   the service's LRU query cache never answers a timed request; a separate "cached" run
   repeats warm-up questions to show what the cache buys. Systems alternate in rounds
   (A B B A ...) so a drift in the shared machine's load hits both alike;
3. reads the resident memory (RSS) of every server worker process after the run;
4. prints p50/p95/p99, throughput, errors, RSS per worker, the ratios and PASS/FAIL per
   target, and writes ``var/reports/bench.json``.

``--against REF [REF ...]`` also runs the service as committed at each ``REF``, side by side
(A/B); the first is "before" in the targets.

The timed strings are gold questions with a courtesy tail ("谢谢", "please", ...), chosen so
the service does the same work as for the bare question (same detected language, glossary
expansions and name/year anchors; variants that change any of them are skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np

from bench.server import OFFLINE_ENV, free_port, rss_kb, uvicorn_process
from index.embedding import choose_precision, cpu_flags, usable_cpus
from index.settings import PROJECT_ROOT, Settings

GOLD = PROJECT_ROOT / "eval" / "gold.jsonl"
REPORT = PROJECT_ROOT / "var" / "reports" / "bench.json"
SERVICE_APP = "service.app:create_app"
BASELINE_APP = "bench.baseline:create_app"
# A rate limit nobody reaches: the benchmark measures latency, not the limiter's 429s.
UNLIMITED = 1_000_000_000
# Courtesy tails make distinct strings that ask the same thing (see the module docstring).
TAILS = {
    "zh": (
        "谢谢",
        "多谢",
        "麻烦了",
        "请回答",
        "盼复",
        "感谢解答",
        "辛苦了",
        "请告知",
        "求解答",
        "拜托了",
        "谢谢！",
        "请尽快回复",
        "先谢过",
        "感谢！",
        "劳驾",
        "在线等",
    ),
    "en": (
        "please",
        "thanks",
        "thank you",
        "many thanks",
        "if you know",
        "in brief",
        "briefly please",
        "if possible",
        "thanks a lot",
        "please answer",
        "cheers",
        "thanks in advance",
        "please help",
        "just curious",
        "kindly answer",
        "much appreciated",
    ),
}
MAX_P99_OVER_P50_AT_8 = 2.0
MAX_RATIO_TO_BASELINE = 0.8
MAX_RATIO_TO_PREVIOUS = 1.1
MAX_RSS_MIB_PER_WORKER = 1.2 * 1024  # 1.2 GiB


@dataclass(frozen=True)
class System:
    """One server under test: how to start it and what to send it."""

    name: str
    app: str
    path: str
    extra_body: dict[str, Any]
    env: dict[str, str]
    workers: int = 1
    cwd: Path = PROJECT_ROOT
    """The checkout the server runs from (another commit's, for an A/B run)."""


@dataclass
class RunResult:
    """Latencies (ms) and errors of one batch of requests at one concurrency."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    stages_ms: list[dict[str, float]] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def merge(self, other: RunResult) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.wall_s += other.wall_s
        self.stages_ms += other.stages_ms
        self.error_samples = (self.error_samples + other.error_samples)[:5]


_START = time.monotonic()


def progress(message: str) -> None:
    """One line on stderr, so a slow phase on a busy machine is visible as it happens."""
    print(f"[{time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def summarise(
    latencies_ms: Sequence[float], *, errors: int = 0, wall_s: float = 0.0
) -> dict[str, Any]:
    """p50/p95/p99/mean/max in ms, throughput and error count."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "errors": errors}
    p50, p95, p99 = (float(x) for x in np.percentile(values, [50, 95, 99]))
    total = int(values.size) + errors
    return {
        "n": int(values.size),
        "errors": errors,
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(p99, 2),
        "mean_ms": round(float(values.mean()), 2),
        "max_ms": round(float(values.max()), 2),
        "throughput_rps": round(total / wall_s, 2) if wall_s > 0 else None,
    }


# ---- questions ---------------------------------------------------------------------------


def load_questions(per_language: int) -> dict[str, list[str]]:
    """``per_language`` gold questions per language, spread over the file (both splits)."""
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line]
    picked: dict[str, list[str]] = {}
    for lang in ("zh", "en"):
        questions = [str(row["question"]) for row in rows if row.get("lang") == lang]
        step = max(1, len(questions) // per_language)
        picked[lang] = questions[::step][:per_language]
    return picked


def distinct_questions(base: dict[str, list[str]], needed: int, settings: Settings) -> list[str]:
    """``needed`` distinct strings, alternating languages, that cost the service the same work.

    Raises:
        SystemExit: the tails cannot make enough variants (use more questions).
    """
    from index.answer.decide import LATIN_NAME
    from index.answer.question import read_question
    from index.glossary import Glossary
    from index.lexical import Tokenizer
    from index.retriever import expand_question

    glossary = Glossary.load(settings.glossary_path)
    tokenizer = Tokenizer(glossary.chinese_terms)

    def signature(question: str) -> tuple[object, ...]:
        language, expansions, _ = expand_question(question, glossary)
        read = read_question(language.text, language.language)
        return (
            language.language,
            language.mixed,
            tuple(expansions),
            read.asks,
            read.required,
            read.years,
            read.aspects,
            tuple(word for word, flag in tokenizer.tagged(language.text) if flag in ("nt", "nz")),
            tuple(LATIN_NAME.findall(language.text)),
        )

    per_language: dict[str, list[str]] = {}
    for lang, questions in base.items():
        joiner = "" if lang == "zh" else " "
        per_language[lang] = [
            variant
            for tail in TAILS[lang]
            for question in questions
            if signature(variant := f"{question}{joiner}{tail}") == signature(question)
        ]
    # Alternate languages so every slice of the list is half Chinese, half English.
    out = [q for pair in zip(*per_language.values(), strict=False) for q in pair][:needed]
    if len(out) < needed:
        raise SystemExit(f"only {len(out)} distinct questions for {needed}; add --questions")
    return out


# ---- servers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A started server: its base URL and the uvicorn process."""

    url: str
    pid: int


@contextlib.contextmanager
def running(system: System, log_dir: Path) -> Iterator[Running]:
    """Start ``system`` under uvicorn; yield where it runs; stop it on exit."""
    port = free_port()
    with uvicorn_process(
        system.app,
        port=port,
        env=system.env,
        log_path=log_dir / f"bench-{system.name}.log",
        workers=system.workers,
        quiet=True,
        cwd=system.cwd,
    ) as process:
        yield Running(f"http://127.0.0.1:{port}", process.pid)


def checkout(ref: str, folder: Path) -> Path:
    """The tracked files of git ``ref`` in ``folder``/<commit> (extracted once), so that an
    earlier version of the service can run beside this one.

    Raises:
        SystemExit: ``ref`` is not a commit of this repository.
    """
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode:
        raise SystemExit(f"--against {ref}: not a commit of this repository")
    commit = found.stdout.strip()
    target = folder / commit[:12]
    if not (target / "service").is_dir():
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit], cwd=PROJECT_ROOT, capture_output=True
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(target, filter="data")
    return target


def service_env(data_dir: Path) -> dict[str, str]:
    """The service's environment in a benchmark: offline, quiet, rate limits out of reach."""
    return {
        **OFFLINE_ENV,
        "POLICY_QA_DATA_DIR": str(data_dir),
        "POLICY_QA_LOG_LEVEL": "WARNING",
        "POLICY_QA_RATE_LIMIT_PER_MINUTE": str(UNLIMITED),
        "POLICY_QA_SITE_RATE_LIMIT_PER_MINUTE": str(UNLIMITED),
    }


def client_session(url: str) -> aiohttp.ClientSession:
    """A keep-alive HTTP client for one server.

    aiohttp: httpx spent 0.5-0.9 ms of its own per request on this machine, a share of the
    measured latency that belongs to neither system. Idle connections are dropped before
    uvicorn's 5 s keep-alive ends them (aiohttp does not retry a POST on a connection the
    server closed while the client was idle).
    """
    return aiohttp.ClientSession(
        base_url=url,
        timeout=aiohttp.ClientTimeout(total=60.0),
        connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=2.0),
    )


def wait_ready(url: str, name: str, timeout_s: float, log_dir: Path) -> None:
    """Poll ``/readyz`` until 200.

    Raises:
        SystemExit: not ready in time (the server's log is named).
    """
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            time.sleep(0.5)
    raise SystemExit(f"{name} not ready after {timeout_s:.0f}s; see {log_dir}/bench-{name}.log")


# ---- load --------------------------------------------------------------------------------


async def drive(
    session: aiohttp.ClientSession,
    system: System,
    questions: Sequence[str],
    *,
    concurrency: int,
    top_k: int,
) -> RunResult:
    """Send each question once with ``concurrency`` closed-loop clients."""
    result = RunResult()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for question in questions:
        queue.put_nowait(question)

    async def client_loop() -> None:
        while True:
            try:
                question = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = {"question": question, "top_k": top_k, **system.extra_body}
            start = time.perf_counter()
            try:
                async with session.post(system.path, json=body) as response:
                    payload = await response.read()
                elapsed = (time.perf_counter() - start) * 1000
                if response.status == 200:
                    result.latencies_ms.append(elapsed)
                    stages = json.loads(payload).get("timings_ms")
                    if isinstance(stages, dict):
                        result.stages_ms.append({k: float(v) for k, v in stages.items()})
                else:
                    result.errors += 1
                    result.error_samples.append(f"{response.status} {payload[:200]!r}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.errors += 1
                result.error_samples.append(repr(exc))

    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - start
    result.error_samples = result.error_samples[:5]
    return result


async def measure_http(
    urls: dict[str, str],
    systems: Sequence[System],
    *,
    warmup: Sequence[str],
    timed: dict[int, list[str]],
    rounds: int,
    top_k: int,
) -> dict[str, dict[str, RunResult]]:
    """Warm up, run every concurrency in alternating rounds, then the cached-question run."""
    clients = {s.name: client_session(urls[s.name]) for s in systems}
    results: dict[str, dict[str, RunResult]] = {s.name: {} for s in systems}
    try:
        for system in systems:  # model, jieba, thread pools and keep-alive connections
            for concurrency in sorted(timed):
                await drive(
                    clients[system.name], system, warmup, concurrency=concurrency, top_k=top_k
                )
        for concurrency, questions in timed.items():
            progress(f"{len(questions)} distinct questions per system at {concurrency} client(s)")
            size = -(-len(questions) // rounds)
            for number, start in enumerate(range(0, len(questions), size)):
                order = systems if number % 2 == 0 else list(reversed(systems))
                for system in order:
                    run = await drive(
                        clients[system.name],
                        system,
                        questions[start : start + size],
                        concurrency=concurrency,
                        top_k=top_k,
                    )
                    results[system.name].setdefault(str(concurrency), RunResult()).merge(run)
        for system in systems:  # warm-up questions again: the service's cache answers these
            results[system.name]["cached"] = await drive(
                clients[system.name], system, list(warmup) * 2, concurrency=1, top_k=top_k
            )
    finally:
        for client in clients.values():
            await client.close()
    return results


# ---- memory ------------------------------------------------------------------------------


def worker_pids(pid: int) -> list[int]:
    """A uvicorn server's worker processes: its children, or itself when it has none."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [int(child) for child in children] or [pid]


def rss_mib(pid: int) -> float:
    """Resident memory of a process (``VmRSS``), in MiB."""
    kb = rss_kb(pid)
    if kb is None:
        raise ValueError(f"no VmRSS for process {pid}")
    return round(kb / 1024, 1)


# ---- report ------------------------------------------------------------------------------


def check(name: str, value: float | None, limit: float, *, at_most: bool = True) -> dict[str, Any]:
    """One target line; a missing value fails."""
    passed = value is not None and (value <= limit if at_most else value >= limit)
    return {"target": name, "value": value, "limit": limit, "pass": passed}


def evaluate(report: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ratios and PASS/FAIL per target from the summaries."""
    runs = report["runs"]
    ours, base = runs["policy-qa"], runs["baseline"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    ratios: dict[str, float | None] = {}
    for name, run in runs.items():
        for clients in ("1", "8"):
            if name != "baseline":
                key = f"{name}_over_baseline_p50_at_{clients}"
                ratios[key] = ratio(run[clients].get("p50_ms"), base[clients].get("p50_ms"))
        ratios[f"{name}_p99_over_p50_at_8"] = ratio(run["8"].get("p99_ms"), run["8"].get("p50_ms"))
    errors = sum(int(r["errors"]) for r in ours.values())
    targets = [
        check(
            "policy-qa p99 <= 2 x p50 at 8 clients",
            ratios["policy-qa_p99_over_p50_at_8"],
            MAX_P99_OVER_P50_AT_8,
        ),
        check("policy-qa errors == 0", float(errors), 0.0),
        check(
            "policy-qa RSS per worker <= 1.2 GiB",
            max(report["rss_mib"]["policy-qa"]),
            MAX_RSS_MIB_PER_WORKER,
        ),
    ]
    for clients in ("1", "8"):
        targets.append(
            check(
                f"policy-qa p50 <= {MAX_RATIO_TO_BASELINE} x baseline p50 ({clients} clients)",
                ratios[f"policy-qa_over_baseline_p50_at_{clients}"],
                MAX_RATIO_TO_BASELINE,
            )
        )
    if report["config"]["against"]:
        before = report["config"]["against"][0]  # the others are for comparison only
        for clients in ("1", "8"):
            now, then = ours[clients].get("p50_ms"), runs[before][clients].get("p50_ms")
            ratios[f"policy-qa_over_{before}_p50_at_{clients}"] = ratio(now, then)
            targets.append(
                check(
                    f"policy-qa p50 <= {MAX_RATIO_TO_PREVIOUS} x {before} p50 ({clients} clients)",
                    ratios[f"policy-qa_over_{before}_p50_at_{clients}"],
                    MAX_RATIO_TO_PREVIOUS,
                )
            )
    return ratios, targets


def print_report(report: dict[str, Any]) -> None:
    """Human-readable tables on stdout."""
    print(f"\nmachine: {report['machine']['cpus']} cpus, load {report['machine']['load']}")
    print(f"model precision: {report['precision']}")
    header = f"{'system':<16} {'clients':>7} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} "
    print(header + f"{'max':>8} {'req/s':>7} {'errors':>6}")
    for name, runs in report["runs"].items():
        for label, s in runs.items():
            if not s.get("n"):
                print(f"{name:<16} {label:>7} {0:>5} {'-':>8} ... errors {s.get('errors')}")
                continue
            rps = s["throughput_rps"] if s["throughput_rps"] is not None else "-"
            print(
                f"{name:<16} {label:>7} {s['n']:>5} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f} "
                f"{s['p99_ms']:>8.1f} {s['max_ms']:>8.1f} {rps:>7} {s['errors']:>6}"
            )
    for name, rss in report["rss_mib"].items():
        shown = ", ".join(f"{r:.0f} MiB ({r / 1024:.2f} GiB)" for r in rss)
        print(f"RSS per worker after the run ({name}): {shown}")
    if report["stages_ms"]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in report["stages_ms"].items())
        print(f"policy-qa server stages, p50 ms at 1 client: {stages}")
    print("ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items()))
    for target in report["targets"]:
        print(f"  {'PASS' if target['pass'] else 'FAIL'}  {target['target']}: {target['value']}")
    for name, samples in report["error_samples"].items():
        for sample in samples:
            print(f"  error sample ({name}): {sample}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per config")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--questions", type=int, default=40, help="gold questions (half zh)")
    parser.add_argument("--rounds", type=int, default=4, help="alternations per config")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "var")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument(
        "--baseline-threads",
        type=int,
        default=0,
        help="torch threads for the baseline; 0 = default",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes for policy-qa"
    )
    parser.add_argument(
        "--against",
        metavar="REF",
        nargs="+",
        default=[],
        help="also run the service as committed at these git refs (e.g. HEAD~1), side by side",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any target fails")
    args = parser.parse_args(argv)
    if not {1, 8} <= set(args.concurrency):
        parser.error("--concurrency must include 1 and 8 (the targets are defined there)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; return 1 with ``--check`` when a target fails."""
    args = parse_args(argv)
    data_dir = args.data_dir.resolve()
    common = {**OFFLINE_ENV, "POLICY_QA_DATA_DIR": str(data_dir)}
    os.environ.update(common)
    settings = Settings(data_dir=data_dir)
    systems = [
        System(
            "policy-qa",
            SERVICE_APP,
            "/v1/ask",
            {"mode": "hybrid"},
            {**service_env(data_dir), "WEB_CONCURRENCY": str(args.workers)},
            workers=args.workers,
        ),
        System(
            "baseline",
            BASELINE_APP,
            "/ask",
            {},
            {
                **common,
                **(
                    {"BASELINE_TORCH_THREADS": str(args.baseline_threads)}
                    if args.baseline_threads
                    else {}
                ),
            },
        ),
    ]
    for number, ref in enumerate(args.against, start=1):
        # The same service as committed at another ref: its own index, the same model files.
        previous = checkout(ref, data_dir / "bench-against")
        systems.insert(
            number,
            System(
                ref,
                SERVICE_APP,
                "/v1/ask",
                {"mode": "hybrid"},
                {
                    **service_env(previous / "var"),
                    "POLICY_QA_MODELS_DIR": str(settings.models_dir or data_dir / "models"),
                    "WEB_CONCURRENCY": str(args.workers),
                },
                workers=args.workers,
                cwd=previous,
            ),
        )
    base = load_questions(args.questions // 2)
    warmup = [q for pair in zip(base["zh"], base["en"], strict=False) for q in pair]
    variants = distinct_questions(base, args.requests * len(args.concurrency), settings)
    timed = {
        c: variants[i * args.requests : (i + 1) * args.requests]
        for i, c in enumerate(args.concurrency)
    }
    log_dir = args.out.parent
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        servers = {s.name: stack.enter_context(running(s, log_dir)) for s in systems}
        urls = {name: server.url for name, server in servers.items()}
        progress(f"starting {', '.join(urls)}; waiting for /readyz")
        for system in systems:
            wait_ready(urls[system.name], system.name, args.ready_timeout, log_dir)
        progress(f"all ready; driving {', '.join(urls)}")
        results = asyncio.run(
            measure_http(
                urls,
                systems,
                warmup=warmup,
                timed=timed,
                rounds=args.rounds,
                top_k=args.top_k,
            )
        )
        rss = {
            name: [rss_mib(pid) for pid in worker_pids(server.pid)]
            for name, server in servers.items()
        }
    load_after = os.getloadavg()

    import torch

    stages = results["policy-qa"]["1"].stages_ms
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in load_after],
            },
            "python": platform.python_version(),
            "torch": torch.__version__,
            "usable_cpus": usable_cpus(),
        },
        "config": {
            **{k: v for k, v in vars(args).items() if k not in {"data_dir", "out"}},
            "distinct_timed_questions": sum(len(q) for q in timed.values()),
        },
        "precision": choose_precision(settings.precision, cpu_flags()),
        "rss_mib": rss,
        "runs": {
            name: {
                label: summarise(r.latencies_ms, errors=r.errors, wall_s=r.wall_s)
                for label, r in runs.items()
            }
            for name, runs in results.items()
        },
        "stages_ms": {
            key: round(float(np.median([s[key] for s in stages if key in s])), 3)
            for key in sorted({k for s in stages for k in s})
        },
        "error_samples": {
            name: [sample for r in runs.values() for sample in r.error_samples][:5]
            for name, runs in results.items()
        },
    }
    report["ratios"], report["targets"] = evaluate(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print_report(report)
    print(f"\nwrote {args.out}")
    failed = [t for t in report["targets"] if not t["pass"]]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
