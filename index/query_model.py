"""The model that embeds questions: a copy of the passage model made for one short text.

* in bfloat16 where the CPU computes it natively (AVX512-BF16, AMX): about a third faster,
  within cosine 0.9999 of float32. ``query_precision=auto`` measures both at start-up and
  keeps float32 where bfloat16 is not faster (CPUs that emulate it) or not faithful;
* with its transformer traced and frozen into a TorchScript graph: eager mode spends a
  fifth of a query in Python dispatching ~300 small ops while holding the GIL, so two
  concurrent queries in one process mostly took turns. The graph runs them in parallel.

Passages, embedded in padded batches at build time, use the float32 model as loaded.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from index.embedding import pipeline_modules
from index.errors import ModelError

BF16_MIN_COSINE = 0.9999
"""How close bfloat16 query vectors must stay to float32 ones to be used."""
_PRECISION_PROBES = (
    "北京独角兽企业有多少家？",
    "How many unicorn companies does Beijing have?",
    "技术合同成交额从2020年的多少提高到了多少？",
    "What does the plan say about Zhongguancun's pilot reforms for talent?",
)


def choose_query_model(model: Any, precision: str, prompt: str) -> tuple[Any, str]:
    """A traced copy of ``model`` for queries, in bfloat16 when that is faithful and (for
    ``auto``) faster than ``model`` itself; returns it with its precision's name.

    Raises:
        ModelError: ``bfloat16`` was asked for but strays from float32.
    """
    if precision != "float32":
        probes = list(_PRECISION_PROBES)
        half = _traced_for_queries(_copy(model, torch.bfloat16), prompt)
        reference = _unit_vectors(model, probes, prompt)
        cosine = float(np.min(np.sum(reference * _unit_vectors(half, probes, prompt), axis=1)))
        if cosine < BF16_MIN_COSINE and precision == "bfloat16":
            raise ModelError(f"bfloat16 queries reach only cosine {cosine:.5f} of float32")
        faithful = cosine >= BF16_MIN_COSINE
        # Where bfloat16 is emulated, even the traced copy is slower than float32 as loaded.
        if faithful and (precision == "bfloat16" or _faster(half, model, probes, prompt)):
            return half, "bfloat16"
        del half
        _release_freed_memory()
    return _traced_for_queries(_copy(model, None), prompt), "float32"


def _copy(model: Any, dtype: torch.dtype | None) -> Any:
    """A copy of ``model`` whose parameters are converted to ``dtype`` as they are copied,
    or shared with ``model`` (``None``): never a second full float32 copy."""
    memo: dict[int, Any] = {
        id(p): p if dtype is None else torch.nn.Parameter(p.detach().to(dtype), requires_grad=False)
        for p in model.parameters()
    }
    clone = copy.deepcopy(model, memo)
    return clone if dtype is None else clone.to(dtype)


def _release_freed_memory() -> None:
    """Hand the heap that a discarded model copy occupied back to the OS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _traced_for_queries(model: Any, prompt: str) -> Any:
    """``model`` with its transformer replaced by a frozen TorchScript trace of itself.

    The trace is taken on one unpadded text, which is how queries are embedded; sequence
    length stays dynamic. A model that cannot be traced is returned as it is.
    """
    modules = pipeline_modules(model)
    encoder = getattr(modules[0], "model", None) if modules else None
    if encoder is None or not hasattr(encoder, "config"):
        return model
    features = model.tokenize([prompt + _PRECISION_PROBES[0]])
    example = (features["input_ids"], features["attention_mask"])
    try:
        # Silenced: the tracer's warnings that branches on the example (e.g. "the mask is all
        # ones") are baked in, since _TracedEncoder refuses the inputs where that matters, and
        # torch 2.13's deprecation notice for torch.jit (torch.export is the successor; it
        # needs a compiler toolchain at start-up for the same gain).
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.jit.freeze(
                torch.jit.trace(  # type: ignore[no-untyped-call]
                    _LastHiddenState(encoder).eval(), example, check_trace=False
                )
            )
    except Exception:  # an architecture tracing cannot handle stays eager
        return model
    modules[0].model = _TracedEncoder(graph, encoder.config)
    return model


class _LastHiddenState(torch.nn.Module):
    """The transformer as a function of (input ids, attention mask): what gets traced."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[
            0
        ]


@contextlib.contextmanager
def graph_start_callback(model: Any, callback: Callable[[], None]) -> Iterator[None]:
    """Have ``callback`` called, on this thread, the moment ``model``'s traced graph is
    about to run without the GIL (at once for a model that has no graph)."""
    modules = pipeline_modules(model)
    encoder = getattr(modules[0], "model", None) if modules else None
    if not isinstance(encoder, _TracedEncoder):
        callback()
        yield
        return
    encoder.starting.callback = callback
    try:
        yield
    finally:
        encoder.starting.callback = None


class _TracedEncoder(torch.nn.Module):
    """Stands in for the Hugging Face model inside a SentenceTransformer's first module."""

    def __init__(self, graph: Any, config: Any) -> None:
        super().__init__()
        self.graph = graph
        self.config = config
        self.starting = threading.local()
        """Per calling thread: ``callback`` to call as the graph starts."""

    def forward(self, input_ids: Any, attention_mask: Any, **_: Any) -> dict[str, Any]:
        # Traced on an all-ones mask, the graph may have dropped the mask: no padding here.
        if input_ids.shape[0] != 1 or not bool(attention_mask.all()):
            raise ValueError("the query encoder takes one unpadded text at a time")
        # The graph runs without the GIL, except where it drops an input: a tensor that
        # Python also holds hands its Python object back, under the GIL, when torch's own
        # count of it falls to one. A view holds one more count for the call, so the graph
        # never stops to wait for whichever thread holds the GIL (up to 5 ms each time).
        held = (input_ids.view(-1), attention_mask.view(-1))
        callback = getattr(self.starting, "callback", None)
        if callback is not None:
            callback()
        hidden = self.graph(input_ids, attention_mask)
        del held
        return {"last_hidden_state": hidden}


def _unit_vectors(model: Any, texts: list[str], prompt: str) -> np.ndarray:
    vectors = model.encode(texts, prompt=prompt, batch_size=1, convert_to_numpy=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def _faster(
    candidate: Any,
    reference: Any,
    texts: list[str],
    prompt: str,
    *,
    rounds: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> bool:
    """Whether ``candidate`` embeds one short query faster than ``reference``.

    The two take turns on every text (after a warm-up pass) and each keeps its best time:
    load elsewhere on the machine hits both alike. Timed one after the other, three
    servers starting at once once kept float32, twice as slow here, for good.
    """
    best = [float("inf"), float("inf")]
    for round_number in range(rounds + 1):
        for text in texts:
            for slot, model in enumerate((candidate, reference)):
                start = clock()
                model.encode([text], prompt=prompt, batch_size=1)
                if round_number:
                    best[slot] = min(best[slot], clock() - start)
    return best[0] < best[1]
