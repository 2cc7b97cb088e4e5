"""Sentence-transformers embeddings: one model per process, for passages and questions.

The default model is multilingual-e5-small built locally from a package (no hub access);
any other sentence-transformers model is one setting away and takes the same code path.

* **Precision.** ``auto`` runs the model in bfloat16 where the CPU declares native
  bfloat16 (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``), else in float32: the
  same machine always gets the same path. Its bfloat16 vectors stay within cosine 0.9999 of
  float32 ones (``tests/test_embedding.py``), so an index built in one precision serves
  questions embedded in the other.
* **Questions** go through a TorchScript trace of the model's transformer, one unpadded
  text at a time, sharing the model's weights. The trace runs without holding the GIL, so
  questions answered at once in one process embed in parallel; eager mode holds it between
  its hundreds of small operations. A model that cannot be traced runs eagerly.
* **Model calls** run on a pool of ``model_call_slots`` threads, one torch thread each:
  the cores are never oversubscribed, and waiting questions are served first come, first
  served instead of all slowing down together.
* Repeated questions are answered from an LRU cache.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from index.errors import ModelError
from index.settings import DEFAULT_MODEL, Settings

Precision = Literal["float32", "bfloat16"]
QUERY_CACHE_SIZE = 1024
AUTO_TORCH_THREADS = 1
"""Intra-op threads per model call when ``torch_threads`` is 0 (auto)."""
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags (``/proc/cpuinfo``) that declare bfloat16 arithmetic in hardware."""
CPUINFO = Path("/proc/cpuinfo")
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


class Embedder:
    """Embeds passages in batches and questions one at a time, with one model."""

    def __init__(
        self,
        model: Any,
        *,
        model_id: str,
        query_prompt: str,
        passage_prompt: str,
        batch_size: int = 32,
        model_call_slots: int = 1,
        precision: Precision = "float32",
    ) -> None:
        """``model``: a SentenceTransformer already in ``precision``.
        ``model_call_slots``: model calls allowed at once."""
        self.model = model
        self.model_id = model_id
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.precision = precision
        self.dimension = int(model.get_embedding_dimension())
        self._model_calls = ThreadPoolExecutor(model_call_slots, thread_name_prefix="model")
        self._encoder = _traced_encoder(model, query_prompt)
        self._after_encoder = list(model)[1:]  # pooling, normalisation
        self.embed_query = functools.lru_cache(maxsize=QUERY_CACHE_SIZE)(self._embed_query)
        """A unit-length, read-only float32 vector of shape ``(dimension,)``; cached."""

    @classmethod
    def from_settings(cls, settings: Settings, *, cpu: Iterable[str] | None = None) -> Embedder:
        """Load (building first if needed) the configured model on the CPU.

        Args:
            settings: model, prompts, precision, threads and workers.
            cpu: the CPU's flags; read from ``/proc/cpuinfo`` when None.

        Raises:
            ModelError: the model cannot be found or loaded.
        """
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(settings.torch_threads or AUTO_TORCH_THREADS)
        precision = choose_precision(settings.precision, cpu_flags() if cpu is None else cpu)
        location, model_id = resolve_model(settings, precision)
        try:
            model = SentenceTransformer(
                location, device="cpu", model_kwargs={"dtype": getattr(torch, precision)}
            )
        except Exception as exc:  # hub errors, missing files, bad configs all end here
            raise ModelError(f"cannot load embedding model {location!r}: {exc}") from exc
        model.eval()
        return cls(
            model,
            model_id=model_id,
            query_prompt=settings.query_prompt,
            passage_prompt=settings.passage_prompt,
            batch_size=settings.embed_batch_size,
            model_call_slots=model_call_slots(settings),
            precision=precision,
        )

    def embed_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model_calls.submit(
            self.model.encode,
            list(texts),
            prompt=self.passage_prompt,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            show_progress_bar=show_progress,
        ).result()
        return _unit_rows(vectors.float().numpy())

    def _embed_query(self, text: str) -> np.ndarray:
        vector = self._model_calls.submit(self._forward, text).result()
        vector.setflags(write=False)  # shared by every caller the cache answers
        return vector

    def _forward(self, text: str) -> np.ndarray:
        """One question through the model's own ``preprocess`` and its modules (not
        ``encode``, whose batch machinery costs a query more than it does)."""
        with torch.inference_mode():
            features = self.model.preprocess([text], prompt=self.query_prompt)
            if self._encoder is None:
                embedding = self.model(features)["sentence_embedding"]
            else:
                features["token_embeddings"] = self._encoder(
                    features["input_ids"], features["attention_mask"]
                )
                for module in self._after_encoder:
                    features = module(features)
                embedding = features["sentence_embedding"]
        # Normalised here in float32: bfloat16's own normalisation is good to ~3 digits.
        vector: np.ndarray = _unit_rows(embedding.float().numpy())[0]
        return vector


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _traced_encoder(model: Any, prompt: str) -> Any:
    """A frozen TorchScript trace of ``model``'s transformer, taking (input ids, attention
    mask) of one unpadded text and returning its token embeddings; None for a model whose
    first module has no Hugging Face transformer, or that tracing cannot handle.

    The trace is taken on one unpadded text (sequence length stays dynamic): it is only
    valid for one such text at a time, which is how questions are embedded.
    """
    modules = list(model)
    encoder = getattr(modules[0], "auto_model", None) if modules else None
    if not isinstance(encoder, torch.nn.Module):
        return None
    features = model.preprocess([prompt + "北京独角兽企业有多少家？"])
    example = (features["input_ids"], features["attention_mask"])
    try:
        # Quiet: torch 2.13 deprecates torch.jit in favour of torch.compile and torch.export,
        # neither of which runs a question without the GIL (docs/performance.md); and the
        # tracer reads every attribute of the model, among them transformers' training-loss
        # property, which logs a notice about a loss nothing here uses.
        with torch.inference_mode(), warnings.catch_warnings(), _quiet("transformers"):
            warnings.simplefilter("ignore")
            return torch.jit.freeze(
                torch.jit.trace(  # type: ignore[no-untyped-call]
                    _LastHiddenState(encoder).eval(), example, check_trace=False
                )
            )
    except Exception:  # an architecture tracing cannot handle stays eager
        return None


class _LastHiddenState(torch.nn.Module):
    """The transformer as a function of (input ids, attention mask): what gets traced."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[
            0
        ]


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Drop a library's log records below ERROR while the block runs."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The feature flags the CPU declares (empty where ``/proc/cpuinfo`` is unreadable)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_precision(setting: str, cpu: Iterable[str]) -> Precision:
    """``setting`` itself, or for ``auto``: bfloat16 where the CPU declares it natively
    (emulated bfloat16 is about twice as slow as float32), else float32."""
    if setting == "bfloat16" or (setting == "auto" and NATIVE_BFLOAT16_FLAGS & set(cpu)):
        return "bfloat16"
    return "float32"


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


def resolve_model(settings: Settings, precision: Precision = "float32") -> tuple[str, str]:
    """Where to load the model from, and the id recorded in index manifests (the same in
    either precision). The default model is built in ``precision``; others are converted
    as they load."""
    if settings.model != DEFAULT_MODEL:
        return settings.model, settings.model
    from index.model_build import ensure_default_model

    folder = ensure_default_model(settings.default_model_dir, precision)
    return str(folder), default_model_id(folder)


def default_model_id(folder: Path) -> str:
    """The built model's id, pinned to the exact weights it was made from."""
    try:
        provenance = json.loads((folder / "policy_qa_model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model folder {folder} has no provenance file: {exc}") from exc
    weights = str(provenance.get("source_sha256", provenance.get("sha256", "")))[:12]
    return f"{provenance.get('model_id', 'intfloat/multilingual-e5-small')}@{weights}"
