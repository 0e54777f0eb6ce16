# One image for every service: `collab gateway|transform|presence|operator`.
#
#   docker build -t collab .                 the runtime image (the last stage)
#   docker build --target dev -t collab:dev  editable install for Tilt's live update
#
# The build stage installs the dependencies (a layer that changes only with
# pyproject.toml), builds the project's wheel and installs it into /opt/venv; the runtime
# stage copies only that venv onto the slim base: no compiler, no pip, no sources. It runs
# as uid 10001 and writes nothing outside /tmp, so it runs on a read-only root file system.

FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 collab \
 && useradd --system --uid 10001 --gid collab --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin collab

FROM base AS build
WORKDIR /src
RUN python -m venv --without-pip /opt/venv
# Dependencies first, from pyproject.toml alone, so a source change reuses this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip --python /opt/venv/bin/python install --no-cache-dir --requirement /tmp/requirements.txt
COPY services/ services/
COPY clients/python/ clients/python/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /wheels/*.whl

# Tilt's image: the same venv with the project installed editable from /app, owned by the
# runtime user, so that live update can sync sources and re-run pip on pyproject changes.
FROM base AS dev
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services/ services/
COPY clients/python/ clients/python/
COPY operator/ operator/
RUN pip --python /opt/venv/bin/python install --no-cache-dir --no-deps --editable . \
 && chown -R 10001:10001 /app /opt/venv
USER 10001:10001
EXPOSE 8000 8001 8002 8080
ENTRYPOINT ["collab"]
CMD ["gateway"]

FROM base AS runtime
# Nothing installs packages at run time: drop the base image's installers.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel
COPY --from=build /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
# gateway 8000, edit-transform 8001, presence 8002, operator 8080 (health and metrics on each).
EXPOSE 8000 8001 8002 8080
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ENTRYPOINT ["collab"]
CMD ["gateway"]
