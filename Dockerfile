# The Provisio application image: one image for `provisio migrate`, `provisio api` and
# `provisio worker` (docker-compose.yml picks the command). Ansible comes with the project's
# dependencies, so the worker can also run the local pipeline runner.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A venv, so the runtime stage copies exactly what was installed and nothing of the build's pip.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install .

FROM ${PYTHON_IMAGE}
# openssh-client: Ansible's ssh connection, for the local runner against real hosts. Unpinned: the
# pinned base image fixes the Debian release, and its security updates must not break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 provisio \
    && useradd --system --uid 10001 --gid provisio --home-dir /var/lib/provisio --create-home \
        --shell /usr/sbin/nologin provisio
COPY --from=build /opt/venv /opt/venv
# The source tree, owned by root so the app cannot rewrite itself. Until pyproject ships
# alembic.ini, db/migrations and playbooks/ as package data, `settings.PROJECT_ROOT` must point
# here: PYTHONPATH puts /app ahead of the installed copy (the venv still supplies every dependency
# and the `provisio` command).
COPY . /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROVISIO_API_HOST=0.0.0.0 \
    PROVISIO_API_PORT=8000 \
    PROVISIO_DATA_DIR=/var/lib/provisio \
    PROVISIO_SANDBOX_ROOT=/var/lib/provisio/sandbox \
    PROVISIO_RUNNER_DIR=/var/lib/provisio/runs
WORKDIR /app
# Bytecode now, as root: the worker's sandbox imports workflows/ afresh for every workflow it runs,
# and the app may not write it at runtime (PYTHONDONTWRITEBYTECODE, a tree it does not own).
RUN python -m compileall -q /app
# Numeric, so that a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8000
CMD ["provisio", "api"]
