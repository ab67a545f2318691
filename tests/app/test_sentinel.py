"""Redis behind Sentinel: the ``redis.sentinel`` settings, and a failover while the monitor
runs (one master, one replica, three sentinels, all local redis-server processes): alerts
keep being delivered through the promoted replica, none is lost, and none is sent twice
except inside the documented window (writes the old master acknowledged in its last moment,
before they reached the replica)."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # no stubs: types-jsonschema is not a dev dependency
import pytest
import redis
import redis.exceptions
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.feed_server import FeedServer, rss
from support.servers import SlackServer
from support.waiting import wait_until

from monitor.app.embedded_redis import free_port
from monitor.app.runner import Runner
from monitor.app.wiring import redis_for_command
from monitor.cli.status import _redis_where
from monitor.errors import ConfigError, StoreError
from monitor.settings import load_settings, split_host_port

MASTER = "mymaster"
PASSWORD = "redis-pw-5d1c"
SENTINEL_PASSWORD = "sentinel-pw-8e2a"
TAG = re.compile(r"n\d{3}")
#: How much older than the kill the first copy of a duplicated alert may be.  Replication to
#: a replica on loopback lags by milliseconds; a send in flight when the master died loses
#: its acknowledgement; both are well inside this.
WINDOW = 2.0
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


# -- settings -----------------------------------------------------------------------------------


def write(tmp_path: Path, redis_section: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(f"{redis_section}channels:\n  console: {{}}\n", encoding="utf-8")
    return path


SENTINEL_YAML = """\
redis:
  sentinel:
    master: mymaster
    sentinels: ["s1:26379", "10.0.0.2:26380", "[::1]:26381"]
    password: ${REDIS_PASSWORD}
    sentinel_password: ${SENTINEL_PASSWORD}
    socket_timeout: 2s
"""


def test_sentinel_settings_are_read_with_their_secrets_masked(tmp_path: Path) -> None:
    env = {"REDIS_PASSWORD": PASSWORD, "SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    settings = load_settings(write(tmp_path, SENTINEL_YAML), env=env)
    sentinel = settings.redis.sentinel
    assert sentinel is not None
    assert sentinel.master == MASTER
    assert [split_host_port(a) for a in sentinel.sentinels] == [
        ("s1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 26381),
    ]
    assert sentinel.socket_timeout.total_seconds() == 2
    assert {PASSWORD, SENTINEL_PASSWORD} <= set(settings.secrets())
    assert PASSWORD not in repr(settings)
    assert SENTINEL_PASSWORD not in repr(settings)


def test_status_names_the_sentinel_master_not_an_embedded_url(tmp_path: Path) -> None:
    """`monitor status` behind Sentinel says which master it asked for, and no password."""
    env = {"REDIS_PASSWORD": PASSWORD, "SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    settings = load_settings(write(tmp_path, SENTINEL_YAML), env=env)
    where = _redis_where(settings)
    assert where == f"sentinel master {MASTER} via s1:26379, 10.0.0.2:26380, [::1]:26381"
    assert PASSWORD not in where


@pytest.mark.parametrize("url", ['"redis://r:6379/0"', "embedded"])
def test_url_and_sentinel_together_are_refused_at_the_url_line(tmp_path: Path, url: str) -> None:
    text = SENTINEL_YAML.replace("redis:\n", f"redis:\n  url: {url}\n", 1)
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), env={"REDIS_PASSWORD": "a", "SENTINEL_PASSWORD": "b"})
    message = str(caught.value)
    assert "monitor.yaml:2" in message, message
    assert "either redis.url or redis.sentinel" in message


@pytest.mark.parametrize(
    ("sentinels", "expected"),
    [
        ('["s1"]', "'s1' is not host:port"),
        ('["s1:port"]', "'s1:port' is not host:port"),
        ('["s1:70000"]', "'s1:70000' is not host:port"),
        ('[":26379"]', "':26379' is not host:port"),
        ("[]", "at least 1 item"),
    ],
)
def test_bad_sentinel_addresses_are_refused_with_their_line(
    tmp_path: Path, sentinels: str, expected: str
) -> None:
    text = f"redis:\n  sentinel:\n    master: m\n    sentinels: {sentinels}\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), env={})
    message = str(caught.value)
    assert "monitor.yaml:4" in message, message
    assert expected in message, message


@given(
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True) | st.ip_addresses().map(str),
    port=st.integers(1, 65535),
)
def test_host_port_round_trips(host: str, port: int) -> None:
    written = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert split_host_port(written) == (host, port)


def test_deploy_sentinel_config_is_monitor_yaml_but_for_redis() -> None:
    """deploy/monitor.sentinel.yaml loads, names the compose sentinels, and cannot drift from
    monitor.yaml: every other section is equal."""
    env = {"REDIS_PASSWORD": PASSWORD, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    plain = load_settings(DEPLOY / "monitor.yaml", env={**env, "SLACK_WEBHOOK_URL": "x"})
    ha = load_settings(DEPLOY / "monitor.sentinel.yaml", env={**env, "SLACK_WEBHOOK_URL": "x"})
    assert ha.redis.sentinel is not None
    assert ha.redis.sentinel.sentinels == (
        "sentinel-1:26379",
        "sentinel-2:26379",
        "sentinel-3:26379",
    )
    assert plain.model_copy(update={"redis": ha.redis}) == ha
    # Equal settings could hide a section left out and filled by its defaults: the text of
    # every section but redis must be the same too.
    assert _without_redis(DEPLOY / "monitor.sentinel.yaml") == _without_redis(
        DEPLOY / "monitor.yaml"
    )


def _without_redis(path: Path) -> list[str]:
    """A config's lines, minus its leading comment and its top-level ``redis:`` section."""
    kept: list[str] = []
    in_redis = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace():
            in_redis = line.startswith("redis:")
        if not in_redis and not (not kept and line.startswith("#")):
            kept.append(line)
    return kept


def test_compose_sentinel_override_matches_compose_spec_and_names_its_services() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    doc = yaml.safe_load((DEPLOY / "compose.sentinel.yaml").read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert not errors, [e.message for e in errors]
    assert {"redis", "redis-2", "sentinel-1", "sentinel-2", "sentinel-3", "monitor"} == set(
        doc["services"]
    )
    config = doc["services"]["monitor"]["environment"]["MONITOR_CONFIG"]
    assert config == "/etc/monitor/monitor.sentinel.yaml"


# -- a master, a replica and three sentinels --------------------------------------------------


@dataclass
class SentinelSet:
    """Local redis-server processes: ``master``, ``replica``, three sentinels."""

    binary: str
    root: Path
    master_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        server = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
        self._spawn("master", [*server, *auth, "--port", str(self.master_port)])
        replica = ["--port", str(self.replica_port), "--replicaof", "127.0.0.1"]
        self._spawn("replica", [*server, *auth, *replica, str(self.master_port)])
        for number, port in enumerate(self.sentinel_ports):
            folder = self.root / f"sentinel{number}"
            folder.mkdir()
            conf = folder / "sentinel.conf"  # sentinels rewrite their config: a file of its own
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nrequirepass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel auth-pass {MASTER} {PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
            )
            self._spawn(f"sentinel{number}", [str(conf), "--sentinel"], first=True)
        for name in self.processes:
            wait_until(functools.partial(self._pings, name), 20, f"{name} answers")
        wait_until(self._replica_in_sync, 30, "the replica syncs")
        wait_until(self._sentinels_agree, 30, "every sentinel sees the others")

    def _spawn(self, name: str, args: list[str], *, first: bool = False) -> None:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        argv = [self.binary, *args] if first else [self.binary, *args, "--dir", str(folder)]
        self.processes[name] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def port(self, name: str) -> int:
        if name.startswith("sentinel"):
            return self.sentinel_ports[int(name.removeprefix("sentinel"))]
        return self.master_port if name == "master" else self.replica_port

    def client(self, name: str) -> redis.Redis:
        password = SENTINEL_PASSWORD if name.startswith("sentinel") else PASSWORD
        return redis.Redis(
            port=self.port(name), password=password, decode_responses=True, socket_timeout=5
        )

    def _pings(self, name: str) -> bool:
        try:
            with self.client(name) as client:
                return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    def _replica_in_sync(self) -> bool:
        with self.client("replica") as client:
            status: object = client.info("replication").get("master_link_status")
            return status == "up"

    def _sentinels_agree(self) -> bool:
        for number in range(3):
            with self.client(f"sentinel{number}") as client:
                state = client.sentinel_master(MASTER)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
        return True

    def master_port_named(self) -> int:
        """The master's port as the first sentinel reports it."""
        with self.client("sentinel0") as client:
            _, port = client.sentinel_get_master_addr_by_name(MASTER)
            return int(port)

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait(10)

    def config(self) -> str:
        addresses = ", ".join(f'"127.0.0.1:{port}"' for port in self.sentinel_ports)
        return (
            f"redis:\n  sentinel:\n    master: {MASTER}\n    sentinels: [{addresses}]\n"
            f"    password: {PASSWORD}\n    sentinel_password: {SENTINEL_PASSWORD}\n"
            "    socket_timeout: 2s\n    connect_timeout: 1s\n"
        )


@pytest.fixture
def sentinel_set(tmp_path: Path, redis_binary: str) -> Iterator[SentinelSet]:
    servers = SentinelSet(redis_binary, tmp_path / "redis")
    servers.root.mkdir()
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def monitor_config(tmp_path: Path, servers: SentinelSet, feed_url: str, slack_url: str) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        servers.config() + f'feeds:\n  - {{name: f0, url: "{feed_url}", interval: 10s}}\n'
        f'rules: {{paths: ["{rules}"]}}\n'
        f'channels: {{slack: {{webhook_url: "{slack_url}", rate_limit: 0s}}}}\n'
        "ingest: {workers: 0, backfill: off}\n"
        "delivery: {burst: 100000, reclaim_after: 5s}\n"
        "health: {port: 0}\nhttp: {host_gap: 0s}\n"
    )
    return config


def delivered(slack: SlackServer) -> dict[str, list[float]]:
    """When Slack accepted each item (by the tag in its title)."""
    times: dict[str, list[float]] = {}
    for request in slack.requests:
        if request.reply.status == 200:
            for tag in set(TAG.findall(request.body.decode())):
                times.setdefault(tag, []).append(request.received_at)
    return times


def put_items(feed_server: FeedServer, count: int) -> None:
    items = [
        {"title": f"Tungsten report n{n:03d}", "guid": f"item-{n}"} for n in range(count, 0, -1)
    ]
    feed_server.put("/f0.xml", rss(items))


async def test_commands_reach_the_master_the_sentinels_name(
    tmp_path: Path, sentinel_set: SentinelSet
) -> None:
    """``redis_for_command`` (every CLI command's client) writes to the master, authenticating
    to the sentinels and to the servers with their own passwords."""
    settings = load_settings(write(tmp_path, sentinel_set.config()), env={})
    async with redis_for_command(settings) as client:
        await client.set("monitor:probe", "1")
        role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
    assert role[0] == "master"
    with sentinel_set.client("master") as master:
        assert master.get("monitor:probe") == "1"


async def test_failover_mid_run_keeps_delivering_without_loss_or_duplicates_outside_window(
    tmp_path: Path, sentinel_set: SentinelSet, feed_server: FeedServer, slack_server: SlackServer
) -> None:
    """Items keep arriving, three a pass; once Slack has 12 alerts the master is SIGKILLed
    while a pass runs.  The monitor, on its Sentinel client, finds the promoted replica (its
    Lua scripts reload there on NOSCRIPT) and every item reaches Slack; an item sent twice
    must have been first sent within ``WINDOW`` s of the kill."""
    config = monitor_config(tmp_path, sentinel_set, feed_server.url("/f0.xml"), slack_server.url)
    settings = load_settings(config, env={})
    killed_at: list[float] = []

    async def kill_master_after(alerts: int) -> None:
        await slack_server.wait_for_async(alerts, within=60)
        await asyncio.to_thread(sentinel_set.kill, "master")
        killed_at.append(time.monotonic())

    errors: Counter[str] = Counter()
    items = 0
    async with Runner(settings, consumer="sentinel-test") as runner:
        killer = asyncio.create_task(kill_master_after(12))
        passes_after_kill = 0
        while passes_after_kill < 8:  # items keep arriving for 8 passes past the kill
            items += 3
            put_items(feed_server, items)
            try:
                await runner.run_once()
            except (StoreError, redis.exceptions.ConnectionError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1  # as the daemon's loops do: retry next pass
            if killed_at:
                passes_after_kill += 1
            assert items < 200, "the master was never killed"
        await killer
        new_master = await asyncio.to_thread(sentinel_set.master_port_named)
        deadline = time.monotonic() + 60
        while len(delivered(slack_server)) < items and time.monotonic() < deadline:
            try:
                await runner.run_once()
            except (StoreError, redis.exceptions.ConnectionError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
            await asyncio.sleep(0.5)  # a pass per half second while redelivery is due

    times = delivered(slack_server)
    expected = {f"n{n:03d}" for n in range(1, items + 1)}
    twice = {tag: sent for tag, sent in times.items() if len(sent) > 1}
    figures = (
        f"{len(times)} of {items} items delivered, {sum(map(len, times.values()))} posts; "
        f"sent twice: {sorted(twice)}; errors during failover: {dict(errors)}"
    )
    print(figures)
    assert new_master == sentinel_set.replica_port, "the sentinels promoted the replica"
    assert set(times) == expected, f"no alert lost: {figures}"
    late = [tag for tag, sent in twice.items() if min(sent) < killed_at[0] - WINDOW]
    assert not late, f"sent twice outside the failover window: {figures}"
    assert max((len(sent) for sent in times.values()), default=0) <= 2, figures
