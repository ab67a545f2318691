"""The Prometheus alerting rules shipped in deploy/, checked by Prometheus' own promtool: they
load, the compose Prometheus config that mounts them loads, and their unit tests
(deploy/prometheus-rules.test.yml) pass and can fail.  Without promtool on PATH (Debian's
``prometheus`` package; .ci/run installs it when it can) the promtool checks are skipped.

The rest needs no promtool: every alert has a unit test that shows it firing, and every
series a rule reads is one the daemon exports, under the scrape job deploy/prometheus.yml
defines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.app.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus-rules.yml"
RULE_TESTS = DEPLOY / "prometheus-rules.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not on PATH: install Debian's 'prometheus' package to check the rules",
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in _yaml(RULES)["groups"] for r in group["rules"]}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_shipped_rules() -> None:
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


@needs_promtool
def test_promtool_accepts_the_compose_prometheus_config_with_the_rules_it_mounts(
    tmp_path: Path,
) -> None:
    """deploy/prometheus.yml names the rules where compose mounts them; a copy of it that
    names the shipped file instead is what the container's Prometheus reads."""
    compose = _yaml(DEPLOY / "compose.yaml")
    mounts = dict(
        reversed(volume.split(":")[:2]) for volume in compose["services"]["prometheus"]["volumes"]
    )
    config = _yaml(DEPLOY / "prometheus.yml")
    config["rule_files"] = [str((DEPLOY / mounts[path]).resolve()) for path in config["rule_files"]]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config), encoding="utf-8")
    checked = promtool("check", "config", copy)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


@needs_promtool
def test_the_rules_unit_tests_pass() -> None:
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_the_unit_tests_notice_an_alert_that_fires_too_soon(alert: str, tmp_path: Path) -> None:
    """The unit tests can fail: with one alert's ``for:`` cut to a minute, they do."""
    doc = _yaml(RULES)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["for"] = "1m"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(doc), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = promtool("test", "rules", tmp_path / RULE_TESTS.name)
    assert tested.returncode != 0
    assert f"alertname: {alert}," in tested.stdout + tested.stderr  # the failures: stderr


def test_every_alert_has_a_unit_test_that_shows_it_firing() -> None:
    fired = {
        case["alertname"]
        for test in _yaml(RULE_TESTS)["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert set(_alerts()) == fired


def test_every_rule_can_be_acted_on() -> None:
    """A severity that routes, a summary, and a description; the rules that are not about
    the daemon's absence say which command to run."""
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        if name not in {"MonitorAbsent", "MonitorDown"}:
            assert "`monitor " in rule["annotations"]["description"], name


def _exported_series() -> set[str]:
    """Every series name the daemon's /metrics can carry (counters with ``_total``,
    histograms with their parts), labelled ones included before their first sample."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count")}
    return names


def test_the_rules_read_only_series_the_daemon_exports_under_its_scrape_job() -> None:
    (job,) = _yaml(DEPLOY / "prometheus.yml")["scrape_configs"]
    exported = _exported_series()
    for name, rule in _alerts().items():
        read = set(re.findall(r"\b(monitor_\w+)\{", rule["expr"]))
        assert read <= exported, f"{name} reads {sorted(read - exported)}"
        jobs = set(re.findall(r'job="([^"]*)"', rule["expr"]))
        assert jobs == {job["job_name"]}, name
