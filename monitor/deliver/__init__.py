"""Delivery: queued matches become messages on the desk's channels, exactly once.

The stages::

    queue         the matches stream in Redis: claim, acknowledge, dead letters (I/O)
    policy        routes, throttles, silences and digest windows (pure)
    worker        one delivery pass over the queue (``DeliveryWorker.run_once``)
    render/       a match as Slack blocks, email, webhook JSON, Apprise and console text (pure)
    channels/     Slack, email, webhook, Apprise and console senders
    digest_store  digest windows kept in Redis
    silences      silences kept in Redis
    ops_alerts    alerts about the daemon itself (dead letters, Redis unreachable)
    build         the delivery worker and channels from the settings

A face: importing it loads no channel.
"""
