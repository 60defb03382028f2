# syntax=docker/dockerfile:1
# The segments worker image:  docker build -t segment-stream:0.1.0 .
#   docker run --rm -e SEGMENTS_BOOTSTRAP_SERVERS=kafka:9092 -v segments-state:/var/lib/segments segment-stream:0.1.0
# Settings come as SEGMENTS_* environment variables (`docker run ... segment-stream:0.1.0 worker --help`).

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

# ---- build: wheels of the package and of every dependency ----------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the engine's Cython modules (setup.py); the image ships the Python headers. Only
# this stage has it: the runtime image gets the compiled wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY stream ./stream
RUN pip wheel --wheel-dir /wheels .

# ---- runtime ----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels segment-stream \
    && groupadd --system --gid 10001 segments \
    && useradd --system --uid 10001 --gid segments --home-dir /var/lib/segments --shell /usr/sbin/nologin segments \
    && mkdir -p /var/lib/segments/state \
    && chown -R segments:segments /var/lib/segments

# The local state (one RocksDB store per partition, and the instance id when none is given): mount a
# volume here so a restarted worker restores only what it missed from the changelog.
ENV SEGMENTS_STATE_DIR=/var/lib/segments/state \
    SEGMENTS_METRICS_PORT=9308
WORKDIR /var/lib/segments
VOLUME ["/var/lib/segments"]
USER 10001:10001
EXPOSE 9308

# /healthz answers 200 while the processing loop runs.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('SEGMENTS_METRICS_PORT') or '9308'), timeout=4)"]

# SIGTERM (docker stop, Kubernetes) makes the worker commit its batch and leave its group.
STOPSIGNAL SIGTERM
ENTRYPOINT ["segments"]
CMD ["worker"]
