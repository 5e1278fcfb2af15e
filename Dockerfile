# The one image every role runs: `serve` (the pluggable component, the default), `publish`, `dns`.
#   docker build -t REGISTRY/dapr-etcd-resolver:0.2.0 .      (docs/deploy.md "Image")
# Multi-stage: wheels are built with the toolchain image, the runtime image only installs them.
# Reproducible: every dependency is installed at the exact version of deploy/image/constraints.txt.

FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
COPY deploy/image/constraints.txt ./constraints.txt
COPY pyproject.toml README.md ./
COPY resolver/ resolver/
RUN pip wheel --no-cache-dir --constraint constraints.txt --wheel-dir /wheels .

FROM python:3.11.10-slim-bookworm
LABEL org.opencontainers.image.title="dapr-etcd-resolver" \
      org.opencontainers.image.description="Cross-cluster name resolution for Dapr backed by an etcd registry" \
      org.opencontainers.image.version="0.2.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# 65532: the same non-root UID as daprd's distroless image, so the component's 0660 socket on
# the shared volume is reachable by daprd without loosening its mode.
RUN groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /wheels /wheels
COPY deploy/image/constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --no-index --constraint /tmp/constraints.txt /wheels/*.whl \
    && rm -rf /wheels /tmp/constraints.txt
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAPR_COMPONENTS_SOCKETS_FOLDER=/tmp/dapr-components-sockets
USER 65532:65532
ENTRYPOINT ["dapr-etcd-resolver"]
CMD ["serve"]
