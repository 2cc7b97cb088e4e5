"""Sentence-transformers embeddings with the model's query/passage prompts.

The default model is multilingual-e5-small built locally from a package (no hub access);
any other sentence-transformers model is one setting away and takes the same code path.

Query path (see docs/performance.md): at most ``cpus // (threads x workers)`` model calls
run at once in each worker process, one torch thread each by default (``torch_threads=0``),
so the cores are never oversubscribed (OpenMP threads that outnumber the cores made a 30 ms
encode take 80-400 ms) and eight concurrent questions queue first come, first served.
A call that finds every slot free and nobody waiting takes them all and computes on all
the worker's cores: a lone question is embedded 1.5x faster on 2 cores, while under load
every call keeps one core.

Queries are embedded by a copy of the model made for them (``index.query_model``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Event, Lock
from typing import Any, TypeVar

import numpy as np

from index.errors import ModelError
from index.settings import DEFAULT_MODEL, Settings

QUERY_CACHE_SIZE = 1024
AUTO_TORCH_THREADS = 1
"""Intra-op threads per model call when ``torch_threads`` is 0 (auto)."""
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
ALONGSIDE_DELAY_S = 0.001
"""How far into the model call work handed to ``embed_query_while`` starts. Python started
with the traced graph slowed the graph by about as long as it ran (a thread of this
process only: the same work in another process did not); a millisecond later it cost
nothing. Measured on 2 vCPUs (docs/performance.md); the cause was not found."""
T = TypeVar("T")


class Embedder:
    """Embeds passages in batches and queries one at a time (with an LRU cache)."""

    def __init__(
        self,
        model: Any,
        *,
        model_id: str,
        query_prompt: str,
        passage_prompt: str,
        batch_size: int = 32,
        parallel_calls: int = 0,
        threads_per_call: int = 0,
        query_precision: str | None = None,
    ) -> None:
        """``parallel_calls``: model calls allowed at once; 0 = unlimited.
        ``threads_per_call``: torch threads per call slot; a call holding every slot gets
        them all (0: torch's own setting, never changed here).
        ``query_precision``: embed queries with a copy of ``model`` made for them
        (``index.query_model``) in this precision, built on first use; ``None``: with
        ``model`` itself."""
        self._model = model
        self._query_precision_setting = query_precision
        self._query: tuple[Any, str] | None = None if query_precision else (model, "float32")
        self._query_lock = Lock()
        self.model_id = model_id
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.dimension = int(model.get_embedding_dimension())
        # The model's own Normalize module already makes unit vectors; do not do it twice.
        self._normalises = any(type(m).__name__ == "Normalize" for m in pipeline_modules(model))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()
        self._gate = FifoGate(parallel_calls) if parallel_calls > 0 else None
        self._threads_per_call = threads_per_call
        self._questions = 0  # questions being answered (see ``answering``)
        # One helper per model call that may run at once (threads start on first use).
        self._alongside = ThreadPoolExecutor(
            max_workers=parallel_calls or usable_cpus(), thread_name_prefix="alongside-model"
        )
        # Calls on every core run here, on one thread: each thread that starts OpenMP work
        # keeps a team of its own, and with teams on several threads libgomp counts more
        # threads than cores and all but stops spinning: lone calls run on whichever pool
        # thread took the request took 17-22 ms instead of ~10 after a burst of load.
        self._all_cores = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-all-cores")

    @property
    def model(self) -> Any:
        """The underlying SentenceTransformer (float32; embeds passages)."""
        return self._model

    @property
    def query_model(self) -> Any:
        """The SentenceTransformer that embeds queries (``model`` or its copy for queries)."""
        return self._query_choice()[0]

    @property
    def query_precision(self) -> str:
        return str(self._query_choice()[1])

    @property
    def lone_call_threads(self) -> int | None:
        """Torch threads a model call gets when it runs alone (``None``: torch's setting)."""
        slots = self._gate.slots if self._gate is not None else 0
        return slots * self._threads_per_call or None

    def prepare_queries(self) -> None:
        """Build the query model now (seconds) rather than on the first question."""
        self._query_choice()

    def _query_choice(self) -> tuple[Any, str]:
        # Built on first use: index builds embed only passages and never pay for it.
        with self._query_lock:
            if self._query is None:
                from index.query_model import choose_query_model

                self._query = choose_query_model(
                    self._model, str(self._query_precision_setting), self.query_prompt
                )
            return self._query

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        """Load (building first if needed) the configured model on the CPU.

        Raises:
            ModelError: the model cannot be found or loaded.
        """
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(settings.torch_threads or AUTO_TORCH_THREADS)
        location, model_id = resolve_model(settings)
        try:
            model = SentenceTransformer(location, device="cpu")
        except Exception as exc:  # hub errors, missing files, bad configs all end here
            raise ModelError(f"cannot load embedding model {location!r}: {exc}") from exc
        model.eval()
        return cls(
            model,
            model_id=model_id,
            query_prompt=settings.query_prompt,
            passage_prompt=settings.passage_prompt,
            batch_size=settings.embed_batch_size,
            parallel_calls=model_call_slots(settings),
            threads_per_call=settings.torch_threads or AUTO_TORCH_THREADS,
            query_precision=settings.query_precision,
        )

    def embed_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)

        # encode() already runs under torch.inference_mode; the gate bounds parallel calls.
        def encode(threads: int | None) -> np.ndarray:
            _use_threads(threads)
            vectors: np.ndarray = self._model.encode(
                list(texts),
                prompt=self.passage_prompt,
                batch_size=self.batch_size,
                normalize_embeddings=not self._normalises,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
            return vectors

        with self._model_call() as call:
            vectors = self._run(call, lambda: encode(call.threads))
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """A unit-length float32 vector of shape ``(dimension,)``; repeated questions are cached."""
        cached = self._cached(text)
        return cached if cached is not None else self._remember(text, self.encode_query(text))

    def embed_query_while(self, text: str, work: Callable[[], T]) -> tuple[np.ndarray, T]:
        """``embed_query(text)``, and what ``work()`` returns, run on a helper thread while
        the model computes (or here, when the cache answers and no model runs).

        The model call holds one core for most of a question, and no GIL: work that does not
        need the vector (the lexical side of a search) is then free on the other core.
        """
        cached = self._cached(text)
        if cached is not None:
            return cached, work()
        started = Event()
        try:
            with self._model_call() as call:
                if call.all_cores:  # the work would only slow the model down: after it
                    vector = self._run(call, lambda: self._forward(text, started, call.threads))
                    helper = None
                else:
                    # Submitted only once this call holds a slot: a helper never sits
                    # waiting for a model call that is itself waiting, in front of one
                    # whose model has run.
                    helper = self._alongside.submit(_after, started, work)
                    vector = self._forward(text, started, call.threads)
        finally:
            started.set()  # a failed model call still lets the helper finish
        return self._remember(text, vector), work() if helper is None else helper.result()

    def _cached(self, text: str) -> np.ndarray | None:
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
            return cached

    def _remember(self, text: str, vector: np.ndarray) -> np.ndarray:
        vector.setflags(write=False)
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return vector

    def encode_query(self, text: str) -> np.ndarray:
        """One question through the query model's own ``preprocess`` and forward pass
        (uncached; ``embed_query`` is the cached way in).

        ``encode`` wraps the same two calls in machinery for batches (length sorting,
        per-item dictionaries, conversions): 0.7 ms of a 14 ms query on 2 cores, for the
        same vector (within 1e-6; normalised once more here, in float32).
        """
        with self._model_call() as call:
            return self._run(call, lambda: self._forward(text, Event(), call.threads))

    def _forward(self, text: str, started: Event, threads: int | None) -> np.ndarray:
        """``encode_query`` inside a held slot, on ``threads`` torch threads; ``started`` is
        set as the traced graph starts (the model's own Python before it calls torch ops,
        each of which lets another thread take the GIL)."""
        import torch

        from index.query_model import graph_start_callback

        model = self.query_model
        _use_threads(threads)
        with torch.inference_mode():
            features = model.preprocess([text], prompt=self.query_prompt)
            with graph_start_callback(model, started.set):
                embedding = model(features)["sentence_embedding"][0]
        vector: np.ndarray = embedding.float().numpy()
        # Normalised here in float32: a bfloat16 model's own normalisation is only good to
        # ~3 digits, and a model without a Normalize module has none.
        vector /= np.linalg.norm(vector)
        return vector

    @contextlib.contextmanager
    def _model_call(self) -> Iterator[_Call]:
        """Hold the gate's slots (if any) for the length of a model call."""
        if self._gate is None:
            yield _Call(threads=None, all_cores=False)
            return
        slots = self._gate.acquire(all_if_idle=self._questions <= 1)
        try:
            threads = slots * self._threads_per_call or None
            yield _Call(threads, all_cores=slots == self._gate.slots and (threads or 0) > 1)
        finally:
            self._gate.release(slots)

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Mark a question as being answered while the block runs (the service wraps each
        request in it). A model call takes every core only for the one question in hand: a
        second question arriving meanwhile would wait for the call to end (2 clients:
        p95 38 ms with the gate alone deciding, 34-35 with this, 28-30 never widening)."""
        with self._lock:
            self._questions += 1
        try:
            yield
        finally:
            with self._lock:
                self._questions -= 1

    def run_alone(self, function: Callable[[], T]) -> T:
        """``function()`` run as this embedder runs a model call (where and with how many torch
        threads): on an idle embedder, as a lone question is embedded, with every core.
        Benchmarks time the bare model this way."""
        with self._model_call() as call:
            return self._run(call, lambda: _with_threads(call.threads, function))

    def _run(self, call: _Call, function: Callable[[], T]) -> T:
        """``function()`` on this thread, or for a call on every core on the thread kept for
        those."""
        if call.all_cores:
            return self._all_cores.submit(function).result()
        return function()


@dataclass(frozen=True, slots=True)
class _Call:
    """What a model call was granted at the gate."""

    threads: int | None
    """Torch threads it may use (``None``: leave torch's setting alone)."""
    all_cores: bool
    """It holds every slot with more than one thread: nothing else computes meanwhile."""


def _with_threads(threads: int | None, function: Callable[[], T]) -> T:
    _use_threads(threads)
    return function()


def _use_threads(threads: int | None) -> None:
    """Give this thread's next torch calls ``threads`` intra-op threads (a per-thread
    OpenMP setting: calls on other threads keep theirs)."""
    import torch

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _after(started: Event, work: Callable[[], T]) -> T:
    """Run ``work`` once the model call is under way."""
    started.wait()
    time.sleep(ALONGSIDE_DELAY_S)
    return work()


class FifoGate:
    """A semaphore that admits waiters strictly in arrival order, and gives a caller that
    finds every slot free and nobody waiting all of them at once.

    ``threading.Semaphore`` lets a thread that arrives just as a slot frees take it ahead
    of threads already waiting; under load that unfairness is the latency tail. Waiters
    are admitted one slot each, so under load every call holds one.
    """

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._free = slots
        self._waiting: deque[Event] = deque()
        self._lock = Lock()

    def acquire(self, *, all_if_idle: bool = True) -> int:
        """Wait for a turn; return how many slots it holds (give them all back)."""
        with self._lock:
            if all_if_idle and not self._waiting and self._free == self._slots:
                self._free = 0
                return self._slots
            if self._free and not self._waiting:
                self._free -= 1
                return 1
            turn = Event()
            self._waiting.append(turn)
        turn.wait()  # a releasing thread hands a slot over directly
        return 1

    @property
    def slots(self) -> int:
        return self._slots

    def release(self, slots: int = 1) -> None:
        with self._lock:
            self._free += slots
            while self._free and self._waiting:
                self._free -= 1
                self._waiting.popleft().set()


def model_call_slots(settings: Settings) -> int:
    """Model calls one worker may run at once: its share of the cores, at least one."""
    threads = settings.torch_threads or AUTO_TORCH_THREADS
    return max(1, usable_cpus() // (threads * settings.workers))


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def pipeline_modules(model: Any) -> list[Any]:
    """A SentenceTransformer's pipeline modules (empty for a stand-in without them)."""
    try:
        return list(model)
    except TypeError:
        return []


def resolve_model(settings: Settings) -> tuple[str, str]:
    """Where to load the model from, and the id recorded in index manifests."""
    if settings.model != DEFAULT_MODEL:
        return settings.model, settings.model
    from index.model_build import ensure_default_model

    folder = ensure_default_model(settings.default_model_dir)
    return str(folder), default_model_id(folder)


def default_model_id(folder: Path) -> str:
    """The built model's id, pinned to the exact weights it was made from."""
    try:
        provenance = json.loads((folder / "policy_qa_model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model folder {folder} has no provenance file: {exc}") from exc
    weights = str(provenance.get("source_sha256", provenance.get("sha256", "")))[:12]
    return f"{provenance.get('model_id', 'intfloat/multilingual-e5-small')}@{weights}"
