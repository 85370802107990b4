# syntax=docker/dockerfile:1
#
# tfserving-exporter container image: the exporter in a slim venv, without TensorFlow.
#
#   docker build -t tfserving-exporter .
#   docker run --rm -p 9850:9850 tfserving-exporter run \
#       --tfserving.grpc-address=tfserving:8500 --tfserving.rest-address=http://tfserving:8501
#
# NOT BUILT IN THIS PROJECT'S CI by Docker: the machines that develop and test this project
# have no Docker daemon. CI builds the same image without one instead: scripts/build_image.py
# parses this file and refuses to build unless its own copies, builder command, ENV, USER,
# WORKDIR, EXPOSE, LABEL keys, ENTRYPOINT and CMD are the same as here; it runs this builder
# command in a Debian bookworm root filesystem made by mmdebstrap (python3, ca-certificates,
# libstdc++6) in place of the python base image, writes an OCI image with umoci, and
# tests/test_image.py starts it (crun, podman, chroot) against the simulator as uid 65534.
# tests/test_slim_venv.py also runs scripts/build_slim_venv.py into a plain venv (no
# TensorFlow runtime in it, site-packages under 100 MB, the exporter's smoke tests pass with
# its python). The TF module list is computed by scripts/tf_proto_files.py in all places.
# What CI cannot catch: this file's own syntax, BuildKit's cache mount and the base image.
#
# Why no TensorFlow: tensorflow-serving-api depends on the tensorflow wheel (about 2 GB
# installed) only for TensorFlow's generated protobuf modules. The builder installs
# tensorflow-serving-api with --no-deps, downloads the tensorflow wheel and copies out of it
# only the *_pb2.py modules that TF Serving's API modules import (transitively), keeping their
# package structure and leaving out tensorflow/__init__.py. tfserving_wire/protos.py
# imports them without ever running TensorFlow.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# The build script first (changes least), then what the exporter's wheel is built from. The
# simulator (tfserving_simulator/) and its demo data stay out: `demo` and `simulate` say so.
COPY scripts/build_slim_venv.py scripts/tf_proto_files.py scripts/
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
COPY tfserving_wire/ tfserving_wire/

# Steps (see the script's docstring): venv without pip at /opt/venv; tensorflow-serving-api
# --no-deps; runtime deps from pyproject.toml minus tensorflow(-serving-api); the exporter
# --no-deps; `pip download --no-deps tensorflow==<serving-api major.minor>.*` and the needed
# generated modules copied out of it; numpy's test suite removed. The wheel is deleted after.
RUN --mount=type=cache,target=/root/.cache/pip \
    python scripts/build_slim_venv.py --dest /opt/venv --download-dir /tmp/tf-wheel \
 && rm -rf /tmp/tf-wheel \
 && test ! -e /opt/venv/lib/python3*/site-packages/tensorflow/__init__.py \
 && test -z "$(find /opt/venv -name 'libtensorflow*' -print -quit)" \
 && /opt/venv/bin/tfserving-exporter --version

# ---------------------------------------------------------------------------------------------
# Same base as the builder: the venv's python links to this image's /usr/local/bin/python3.
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="tfserving-exporter" \
      org.opencontainers.image.description="Prometheus exporter sidecar for TensorFlow Serving: model versions, signatures, traffic and golden-set canaries" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="README.md" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

COPY --from=builder /opt/venv /opt/venv

# MALLOC_ARENA_MAX=2: with one glibc arena per thread, the per-request HTTP threads made RSS
# creep up over a 10-minute soak; two arenas keep it flat (README: Soak). The exporter sets
# the same itself when the variable is unset, and fixes glibc's mmap threshold
# (exporter/allocator.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2

# nobody:nogroup. Nothing is written at run time, so a read-only root filesystem works.
USER 65534:65534
WORKDIR /tmp

EXPOSE 9850

# No curl in slim images: the venv's python asks /-/healthy. This assumes the default
# --web.listen-address (:9850); with another port, override the health check too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9850/-/healthy', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["tfserving-exporter"]
CMD ["run"]
