# logcap: a log-shipping agent. Multi-stage: build a wheel, install it into a slim runtime.
# The base is a build argument (any image with Python 3.11 and pip), e.g.
#   podman build --build-arg BASE_IMAGE=localhost/debian-python:bookworm -t logcap .
# Dependencies are installed at the versions pinned in requirements/runtime.txt (`make lock`).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY requirements/runtime.txt ./requirements/runtime.txt
COPY setup.cfg pyproject.toml README.md ./
COPY logcap ./logcap
RUN pip wheel --no-cache-dir -c requirements/runtime.txt --wheel-dir /wheels . \
    && cp requirements/runtime.txt /wheels/runtime.txt

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home /var/lib/logcap logcap \
    && mkdir -p /var/lib/logcap /etc/logcap \
    && chown logcap /var/lib/logcap
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels -c /wheels/runtime.txt \
        /wheels/logcap-*.whl \
    && rm -rf /wheels
COPY configs/ /etc/logcap/
WORKDIR /var/lib/logcap
USER logcap
ENV LOGCAP_CONFIG=/etc/logcap/config.yaml \
    LOGCAP_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8401 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8401/health', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["logcap"]
CMD ["run"]
