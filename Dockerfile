# logcap: a log-shipping agent. Multi-stage: build the wheel and install it into a virtualenv,
# then copy that virtualenv into a runtime stage of the same base.
#
# BASE_IMAGE: any Debian-like image with python3 >= 3.11 and its venv module (python:3.11-slim,
# or Debian's python3 + python3-venv; Debian refuses system-wide pip installs, PEP 668, so
# everything goes into the virtualenv /opt/logcap). Both stages must use the same base: the
# virtualenv links to the base's interpreter.
#
# pip reads its settings from the environment, so a build behind a proxy or a private index
# passes them as build arguments (for example --build-arg PIP_INDEX_URL=... or PIP_CERT with
# the CA file mounted by `podman build -v`); none is needed with direct access to PyPI.
#
# Dependencies are installed at the versions pinned in requirements/runtime.txt (`make lock`).
#
# logcap's compiled modules (setup.py's EXTENSIONS) are built in the build stage, which installs
# a C compiler, and Debian's python3-dev where the base's interpreter has no headers (Debian's
# python3; python:3.11-slim has them); the runtime stage gets only the built virtualenv.
#
# The agent runs as uid 10001 (user logcap). Host logs are usually 0640 root:adm (gid 4) or
# owned by the service's group: give the container that group, e.g. `docker run --group-add 4`
# (compose: `group_add: ["4"]`), and mount the log directory read-only.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    && packages="gcc libc6-dev" \
    && if [ ! -e "$include/Python.h" ]; then packages="$packages python3-dev"; fi \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/logcap
WORKDIR /src
COPY requirements/runtime.txt ./requirements/runtime.txt
COPY setup.cfg setup.py pyproject.toml MANIFEST.in README.md ./
COPY logcap ./logcap
# The logcap wheel and the wheels of its dependencies, then an install from those wheels only
# (not editable: nothing of /src is used at run time); then every compiled module of setup.py
# must import (from outside /src, so from the installed wheel).
RUN /opt/logcap/bin/pip wheel -c requirements/runtime.txt --wheel-dir /wheels . \
    && /opt/logcap/bin/pip install --no-index --find-links /wheels -c requirements/runtime.txt \
        /wheels/logcap-*.whl \
    && /opt/logcap/bin/logcap --help >/dev/null \
    && cd / && /opt/logcap/bin/python -c "import ast, importlib; \
[importlib.import_module(c.args[0].value) for c in ast.walk(ast.parse(open('/src/setup.py').read())) \
 if isinstance(c, ast.Call) and getattr(c.func, 'id', '') == 'Extension']"

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home /var/lib/logcap logcap \
    && mkdir -p /var/lib/logcap /etc/logcap \
    && chown logcap /var/lib/logcap
COPY --from=build /opt/logcap /opt/logcap
COPY configs/ /etc/logcap/
WORKDIR /var/lib/logcap
USER logcap
ENV PATH=/opt/logcap/bin:$PATH \
    LOGCAP_CONFIG=/etc/logcap/config.yaml \
    LOGCAP_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8401 8001
# LOGCAP_HEALTH_URL: where the check asks, if server.port is not 8401 (e.g. with --network host).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen(os.environ.get('LOGCAP_HEALTH_URL', 'http://127.0.0.1:8401/health'), timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["logcap"]
CMD ["run"]
