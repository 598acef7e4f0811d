# logcap: a log-shipping agent. Multi-stage: build a wheel, install it into a slim runtime.
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY logcap ./logcap
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /var/lib/logcap logcap \
    && mkdir -p /var/lib/logcap /etc/logcap \
    && chown logcap /var/lib/logcap
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
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
