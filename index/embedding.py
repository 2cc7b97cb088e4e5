"""Sentence-transformers embeddings with the model's query/passage prompts.

The default model is multilingual-e5-small built locally from a package (no hub access);
any other sentence-transformers model is one setting away and takes the same code path.

Query path (see docs/performance.md): one short query gains little from torch's intra-op
threads, and on a busy 2-core machine their OpenMP spin-waits made a 30 ms encode take
80-400 ms. So by default (``torch_threads=0``) every model call runs on one thread, and at most
``cpus // (threads x workers)`` calls run at once in each worker process: the cores are
never oversubscribed, and eight concurrent questions queue first come, first served
instead of all slowing down together (and fighting over the GIL).

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
        query_precision: str | None = None,
    ) -> None:
        """``parallel_calls``: model calls allowed at once; 0 = unlimited.
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
        # One helper per model call that may run at once (threads start on first use).
        self._alongside = ThreadPoolExecutor(
            max_workers=parallel_calls or usable_cpus(), thread_name_prefix="alongside-model"
        )

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
            query_precision=settings.query_precision,
        )

    def embed_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # encode() already runs under torch.inference_mode; the gate bounds parallel calls.
        with self._model_call():
            vectors = self._model.encode(
                list(texts),
                prompt=self.passage_prompt,
                batch_size=self.batch_size,
                normalize_embeddings=not self._normalises,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
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
            with self._model_call():
                # Submitted only once this call holds a slot: a helper never sits waiting for
                # a model call that is itself waiting, in front of one whose model has run.
                helper = self._alongside.submit(_after, started, work)
                vector = self._forward(text, on_graph_start=started.set)
        finally:
            started.set()  # a failed model call still lets the helper finish
        return self._remember(text, vector), helper.result()

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
        with self._model_call():
            return self._forward(text)

    def _forward(
        self, text: str, *, on_graph_start: Callable[[], None] | None = None
    ) -> np.ndarray:
        """``encode_query`` inside a held slot; ``on_graph_start`` is called as the traced
        graph starts (after the model's own Python before it, whose torch ops each let
        another thread take the GIL)."""
        import torch

        from index.query_model import graph_start_callback

        model = self.query_model
        announce = (
            contextlib.nullcontext()
            if on_graph_start is None
            else graph_start_callback(model, on_graph_start)
        )
        with torch.inference_mode():
            features = model.preprocess([text], prompt=self.query_prompt)
            with announce:
                embedding = model(features)["sentence_embedding"][0]
        vector: np.ndarray = embedding.float().numpy()
        # Normalised here in float32: a bfloat16 model's own normalisation is only good to
        # ~3 digits, and a model without a Normalize module has none.
        vector /= np.linalg.norm(vector)
        return vector

    @contextlib.contextmanager
    def _model_call(self) -> Iterator[None]:
        """Hold one of the gate's slots (if any) for the length of a model call."""
        if self._gate is None:
            yield
            return
        self._gate.acquire()
        try:
            yield
        finally:
            self._gate.release()


def _after(started: Event, work: Callable[[], T]) -> T:
    """Run ``work`` once the model call is under way."""
    started.wait()
    time.sleep(ALONGSIDE_DELAY_S)
    return work()


class FifoGate:
    """A semaphore that admits waiters strictly in arrival order.

    ``threading.Semaphore`` lets a thread that arrives just as a slot frees take it ahead
    of threads already waiting; under load that unfairness is the latency tail.
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: deque[Event] = deque()
        self._lock = Lock()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = Event()
            self._waiting.append(turn)
        turn.wait()  # the releasing thread hands its slot over directly

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1


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
