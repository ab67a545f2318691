# monitor: the always-on news-alert daemon.
# Runtime dependencies come pinned from requirements.lock; the package itself is installed
# without re-resolving them, so the image is reproducible.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY monitor ./monitor
# pip and setuptools are needed to install, not to run (nothing imports pkg_resources):
# removing them from the copied venv saves about 25 MB.
RUN python -m venv /opt/monitor \
 && /opt/monitor/bin/pip install --no-cache-dir --requirement requirements.lock \
 && /opt/monitor/bin/pip install --no-cache-dir --no-deps . \
 && /opt/monitor/bin/python -m pip uninstall --yes --quiet pip setuptools

FROM python:3.11-slim-bookworm
ENV PATH=/opt/monitor/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MONITOR_CONFIG=/etc/monitor/monitor.yaml
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /var/lib/monitor --shell /usr/sbin/nologin monitor \
 && mkdir -p /var/lib/monitor /etc/monitor \
 && chown monitor:monitor /var/lib/monitor
COPY --from=build /opt/monitor /opt/monitor
COPY deploy/monitor.yaml /etc/monitor/monitor.yaml
COPY rules /etc/monitor/rules
USER 10001:10001
WORKDIR /var/lib/monitor
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["monitor", "health", "--url", "http://127.0.0.1:8080/healthz"]
# Exec form: the daemon is PID 1 and receives SIGTERM directly for a graceful stop.
ENTRYPOINT ["monitor"]
CMD ["run"]
