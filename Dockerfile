# syntax=docker/dockerfile:1
# tollguard worker image. Two stages: the builder has compilers and pip and
# builds a virtual environment; the final image gets only that environment,
# the rule packs and numbering data, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Compilers only for dependencies without a wheel for this platform; they never
# reach the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tollguard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
RUN /opt/tollguard/bin/pip install --no-compile . \
    && /opt/tollguard/bin/python -m compileall -q /opt/tollguard/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tollguard" \
      org.opencontainers.image.description="Kafka-native streaming detector of toll fraud on IP telephony" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 tollguard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin tollguard
COPY --from=builder /opt/tollguard /opt/tollguard
COPY rules /app/rules
ENV PATH=/opt/tollguard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOLLGUARD_RULES=/app/rules/default.yaml \
    TOLLGUARD_RULES_DIR=/app/rules \
    TOLLGUARD_DATA_DIR=/var/lib/tollguard \
    TOLLGUARD_WEB_PORT=6066
# The only writable path the worker needs; Kubernetes mounts a volume here so
# the root filesystem can stay read-only.
RUN mkdir -p /var/lib/tollguard && chown 10001:10001 /var/lib/tollguard
WORKDIR /app
USER 10001:10001
EXPOSE 6066
ENTRYPOINT ["tollguard"]
CMD ["worker"]
