# syntax=docker/dockerfile:1
# driftwarden: `docker build -t ghcr.io/driftwarden/driftwarden:0.1.0 .` (the Helm chart's default image).
# The chart runs it read-only as uid/gid 10001 with the config at /etc/driftwarden/config.yaml and the
# state directory at /var/lib/driftwarden.

ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- builder: the project and every dependency as wheels --------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A C compiler for the hot path's C extensions (setup.py; each optional, but the hot path is about twice as slow
# without them). Only the builder has it: the runtime installs the built wheel.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY monitor/ monitor/
COPY detectors/ detectors/
COPY alerts/ alerts/
# With the confluent extra, so that kafka.client: confluent (librdkafka) works in the image too, and the s3 one
# (boto3) for state.store: s3, the Helm chart's default.
RUN pip wheel --wheel-dir /wheels ".[confluent,s3]"

# --- runtime: the wheels installed offline, nothing else ----------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 driftwarden \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/driftwarden \
       --shell /usr/sbin/nologin driftwarden \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/driftwarden \
    && install -d -m 0755 /etc/driftwarden
# The wheels are bind-mounted from the builder for this one step, so no layer keeps them.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "driftwarden[confluent,s3]"
WORKDIR /var/lib/driftwarden
USER 10001:10001
EXPOSE 9108
ENTRYPOINT ["driftwarden"]
CMD ["run", "--config", "/etc/driftwarden/config.yaml"]
