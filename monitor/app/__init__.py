"""The daemon's shell: ``daemon`` (composition, scheduling, signals, reload, health),
``embedded_redis`` (a private redis-server), ``logs`` and ``metrics``.  A face: it imports
nothing, so ``import monitor.app.logs`` does not start the daemon's imports."""
