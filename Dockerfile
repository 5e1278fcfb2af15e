# The one image every role runs: `serve` (the pluggable component, the default), `publish`, `dns`.
#   docker build -t dapr-etcd-resolver .
# Multi-stage: wheels are built with the toolchain image, the runtime image only installs them.

FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY resolver/ resolver/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.10-slim-bookworm
# 65532: the same non-root UID as daprd's distroless image, so the component's 0660 socket on
# the shared volume is reachable by daprd without loosening its mode.
RUN groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAPR_COMPONENTS_SOCKETS_FOLDER=/tmp/dapr-components-sockets
USER 65532:65532
ENTRYPOINT ["dapr-etcd-resolver"]
CMD ["serve"]
