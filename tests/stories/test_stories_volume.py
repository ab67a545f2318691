"""Volume rules (frequency, spikes against a trailing baseline) and first mentions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.redisio import Keys
from monitor.stories.trends import VolumeCounts, VolumeRule, expected, volume_fires
from monitor.stories.volume import VolumeStore

NOW = datetime(2026, 3, 9, 12, tzinfo=UTC)
KEYS = Keys("t")
SPIKE = VolumeRule("rule:kz-tungsten", window=timedelta(hours=1), factor=4.0, min_count=5)


@pytest.mark.parametrize(
    ("rule", "counts", "reason"),
    [
        (VolumeRule("s", at_least=3), VolumeCounts(3, 0), "frequency"),
        (VolumeRule("s", at_least=3), VolumeCounts(2, 500), None),
        (SPIKE, VolumeCounts(8, 168), "spike"),  # 8 against 1 an hour
        (SPIKE, VolumeCounts(3, 168), None),  # not 4 times the hourly rate
        (SPIKE, VolumeCounts(4, 0), None),  # below min_count, however quiet the baseline
        (SPIKE, VolumeCounts(5, 0), "spike"),
        (SPIKE, VolumeCounts(20, 168 * 10), None),  # 20 against 10 an hour
        (VolumeRule("s"), VolumeCounts(1000, 0), None),  # neither configured
    ],
)
def test_volume_decisions(rule: VolumeRule, counts: VolumeCounts, reason: str | None) -> None:
    assert volume_fires(rule, counts) == reason


def test_the_baseline_is_scaled_to_one_window() -> None:
    assert expected(SPIKE, 168) == pytest.approx(1.0)


async def test_a_spike_fires_once_per_burst_and_rearms(redis_client: aioredis.Redis) -> None:
    volume = VolumeStore(redis_client, KEYS)
    start = NOW - timedelta(days=7)
    for hour in range(7 * 24):  # a week at one match an hour
        assert await volume.observe(SPIKE, start + timedelta(hours=hour)) is None
    burst = [await volume.observe(SPIKE, NOW + timedelta(minutes=m)) for m in range(12)]
    assert burst.count("spike") == 1
    assert burst.index("spike") == 4  # the fifth match in the hour
    quiet = NOW + timedelta(hours=3)
    assert await volume.observe(SPIKE, quiet) is None
    again = [await volume.observe(SPIKE, quiet + timedelta(minutes=m)) for m in range(1, 12)]
    assert again.count("spike") == 1


async def test_frequency_counts_survive_a_restart(own_redis: EmbeddedRedis) -> None:
    rule = VolumeRule("tag:sanctions", window=timedelta(hours=6), at_least=3)
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        volume = VolumeStore(client, KEYS)
        assert await volume.observe(rule, NOW) is None
        assert await volume.observe(rule, NOW + timedelta(hours=1)) is None
    finally:
        await client.aclose()
    own_redis.stop()
    own_redis.start()
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        volume = VolumeStore(client, KEYS)
        assert await volume.observe(rule, NOW + timedelta(hours=2)) == "frequency"
        counts = await volume.counts(rule, NOW + timedelta(hours=2))
        assert counts == VolumeCounts(3, 0)
    finally:
        await client.aclose()


async def test_counts_leave_the_window_and_the_baseline(redis_client: aioredis.Redis) -> None:
    volume = VolumeStore(redis_client, KEYS)
    await volume.counts(SPIKE, NOW, add=2)
    assert await volume.counts(SPIKE, NOW + timedelta(minutes=30)) == VolumeCounts(2, 0)
    assert await volume.counts(SPIKE, NOW + timedelta(hours=2)) == VolumeCounts(0, 2)
    assert await volume.counts(SPIKE, NOW + timedelta(days=8)) == VolumeCounts(0, 0)
    assert await redis_client.hlen(KEYS.volume(SPIKE.series)) == 0


async def test_first_mention_fires_once_per_rule_and_entity(
    redis_client: aioredis.Redis,
) -> None:
    volume = VolumeStore(redis_client, KEYS)
    assert await volume.first_mentions("watch", ["cove-kaz", "jiaxin"]) == ["cove-kaz", "jiaxin"]
    assert await volume.first_mentions("watch", ["jiaxin", "lynas"]) == ["lynas"]
    assert await volume.first_mentions("other", ["jiaxin"]) == ["jiaxin"]
    assert await volume.first_mentions("watch", []) == []
