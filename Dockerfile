# syntax=docker/dockerfile:1
# The worker and CLI image: `wedding-engine` as entrypoint, `worker` by default.
#
# The same install as scripts/install, less what runs elsewhere: Kafka (and the Java and Maven
# it needs), PostgreSQL and Redis are their own services (docker-compose.yml, or external to a
# Kubernetes cluster: k8s/). What stays: the PDF fonts (fonts-dejavu-core,
# fonts-droid-fallback) and the Python package with its runtime dependencies (no dev extra).
# Build: docker build -t wedding-engine:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the package and its dependencies in a virtual environment ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
# dependencies first (a layer that survives code changes), then the package itself
COPY pyproject.toml README.md ./
RUN mkdir -p stream_app && touch stream_app/__init__.py \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall -y wedding-reporting-engine \
    && rm -rf build stream_app ./*.egg-info
COPY stream_app ./stream_app
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/wedding-engine --help > /dev/null

# -- runtime: the virtual environment, the fonts, a non-root user --------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       fonts-dejavu-core fonts-droid-fallback \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 wedding \
    && useradd --system --uid 10001 --gid wedding --home-dir /app --create-home wedding \
    && mkdir -p /data/tables /data/artifacts \
    && chown -R wedding:wedding /data
COPY --from=build /opt/venv /opt/venv
# Settings of a container (stream_app/settings.py): listen on every interface, keep tables and
# artifacts under /data (volumes). WEDDING_WEB_HOST, the name other workers reach this one
# by, is set per worker by docker-compose.yml and k8s/.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEDDING_WEB_BIND=0.0.0.0 \
    WEDDING_WEB_PORT=6066 \
    WEDDING_DATA_DIR=/data/tables \
    WEDDING_ARTIFACT_DIR=/data/artifacts
WORKDIR /app
USER 10001:10001
EXPOSE 6066
# SIGTERM (docker stop, a pod's termination) stops a worker cleanly: wedding-engine is PID 1
# and faust handles the signal; give it the grace period set in docker-compose.yml / k8s/.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wedding-engine"]
CMD ["worker", "--loglevel", "info"]
