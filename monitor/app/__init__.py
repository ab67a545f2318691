"""The daemon's shell: ``wiring`` (the one composition root: Redis, stores, channels, the
daemon's parts; the CLI uses it too), ``runner`` (one pass: poll, deliver, report; rule and
config reload), ``daemon`` (the passes on a schedule, loops, signals), ``reload`` (change
detection and reload decisions), ``health_server`` (healthz, readyz, metrics), ``embedded_redis``
(a private redis-server), ``logs`` and ``metrics``.  A face: it imports nothing, so
``import monitor.app.logs`` does not start the daemon's imports."""
