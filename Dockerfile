# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target runtime -t mcnn-appliance:runtime .   # classify and watch: OpenVINO, no torch
#   docker build --target trainer -t mcnn-appliance:trainer .   # + train and export (torch CPU, ONNX, NNCF)
# Every version is pinned: the base image by its tag, the Python packages by docker/requirements-*.txt.
# tests/docker/replay_dockerfile.py replays each target's COPY and pip steps from this very file in a
# fresh virtualenv and runs the appliance there, so the tests cannot drift from the images.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
# Thread defaults: OpenVINO (classify) and torch (train) size their pools from the CPUs the
# container may use (its cpuset and its --cpus quota); MCNN_THREADS=N overrides that. Other
# OpenMP/BLAS pools stay at one thread so they never compete with those pools for the cores.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    MCNN_THREADS=0
RUN useradd --create-home --uid 10001 --user-group appliance
WORKDIR /opt/mcnn-appliance

FROM base AS runtime
# Dependencies first, in their own layer: a code change does not reinstall OpenVINO.
COPY docker/requirements-runtime.txt docker/
RUN pip install --no-cache-dir --requirement docker/requirements-runtime.txt
# The package: what .dockerignore leaves of the context (pyproject.toml, README.md, the three packages).
COPY . .
# --no-index: nothing beyond the pinned packages above may be fetched, so the build fails if they miss a
# dependency of pyproject.toml; pip check fails it if a pinned version no longer fits.
RUN pip install --no-cache-dir --no-index --no-build-isolation . && pip check
USER 10001:10001
VOLUME ["/plates", "/models", "/results"]
ENTRYPOINT ["mcnn-appliance"]
# By default: classify the plate mounted at /plates with the model mounted at /models.
CMD ["classify", "/plates", "--model", "/models", "--out", "/results"]

FROM base AS trainer
# The CPU build of torch from PyTorch's CPU index (PyPI's torch pulls the CUDA libraries), then the rest.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu
COPY docker/requirements-trainer.txt docker/
RUN pip install --no-cache-dir --requirement docker/requirements-trainer.txt
# The package: what .dockerignore leaves of the context (pyproject.toml, README.md, the three packages).
COPY . .
# The extras' versions are pinned by requirements-trainer.txt; --no-index proves it holds all of them.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --no-build-isolation ".[train,export]" && pip check
# matplotlib (training curves) needs a writable config folder whatever user the container runs as.
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
VOLUME ["/data", "/runs"]
ENTRYPOINT ["mcnn-appliance"]
CMD ["--help"]
