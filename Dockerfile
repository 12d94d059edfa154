# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target runtime -t mcnn-appliance:runtime .   # classify only: OpenVINO, no torch
#   docker build --target trainer -t mcnn-appliance:trainer .   # + train and export (torch CPU)
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 1000 appliance
WORKDIR /opt/mcnn-appliance
COPY pyproject.toml README.md ./
COPY appliance ./appliance
COPY training ./training
COPY export ./export

FROM base AS runtime
RUN pip install --no-cache-dir .
USER appliance
VOLUME ["/plates", "/models", "/results"]
ENTRYPOINT ["mcnn-appliance"]
# By default: classify the plate mounted at /plates with the model at /models.
CMD ["classify", "/plates", "--model", "/models", "--out", "/results"]

FROM base AS trainer
# The CPU build of torch: from PyTorch's CPU index (a plain `pip install torch` pulls CUDA).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir ".[train,export]"
USER appliance
VOLUME ["/data", "/runs"]
ENTRYPOINT ["mcnn-appliance"]
CMD ["--help"]
