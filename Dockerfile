# syntax=docker/dockerfile:1
# Two stages: npm installs the pinned browser assets (htmx, swagger-ui); the runtime image has
# Python, the pinned requirements, the app and those assets, and runs as a non-root user.

FROM node:22.12.0-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error \
 && mkdir -p vendor/swagger-ui \
 && cp node_modules/htmx.org/dist/htmx.min.js vendor/ \
 && cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
       node_modules/swagger-ui-dist/LICENSE vendor/swagger-ui/

FROM python:3.11.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WALLET_ENV=production \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/wallet-metrics
RUN groupadd --system --gid 10001 wallet \
 && useradd --system --uid 10001 --gid wallet --no-create-home --shell /usr/sbin/nologin wallet
WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
# The code stays owned by root: the service user can read it, not change it.
COPY wsgi.py seed.py gunicorn.conf.py ./
COPY bin/entrypoint bin/entrypoint
COPY wallet_web wallet_web
COPY migrations migrations
COPY templates templates
COPY static static
COPY --from=assets /build/vendor static/vendor
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["bin/entrypoint"]
