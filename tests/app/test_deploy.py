"""deploy/ checked without a Docker engine, a cluster or the network.

Every YAML document under deploy/ parses; the Kubernetes manifests validate against the
Kubernetes JSON schemas bundled by ``kubernetes-validate``; deploy/compose.yaml validates against
the compose-spec schema vendored in tests/data/schemas/; and the pieces agree with each other:
probes and scrape targets hit the port the config listens on, the ConfigMaps load with the
daemon's own loaders, every volume is mounted and every mount has a volume, the pods run as the
Dockerfile's user.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # no stubs: types-jsonschema is not a dev dependency
import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed marker
import pytest
import yaml

from monitor.rules.load import load_rules
from monitor.settings import Settings, load_settings, parse_duration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"
#: Oldest Kubernetes minor the manifests are checked against (policy/v1 PDBs, seccompProfile).
K8S_VERSION = "1.30"

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def _docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _k8s_resources() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in _docs(path)
        if doc.get("kind") != "Kustomization"
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _k8s_resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} under {K8S}, found {len(found)}"
    return found[0]


def _deployment() -> dict[str, Any]:
    return _one("Deployment", "monitor")


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    containers: dict[str, dict[str, Any]] = {
        c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]
    }
    return containers[name]


def _example_secret_env() -> dict[str, str]:
    return dict(_one("Secret", "monitor-secrets")["stringData"])


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.fixture(scope="module")
def k8s_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The ConfigMap's monitor.yaml loaded as the pod would: Secret values plus the pod's env."""
    config = _one("ConfigMap", "monitor-config")["data"]["monitor.yaml"]
    path = tmp_path_factory.mktemp("k8s-config") / "monitor.yaml"
    path.write_text(config, encoding="utf-8")
    env = {**_example_secret_env(), **_container_env(_container(_deployment(), "monitor"))}
    return load_settings(path, env=env)


def _compose() -> dict[str, Any]:
    (doc,) = _docs(DEPLOY / "compose.yaml")
    return dict(doc)


# --- (a) every document parses ------------------------------------------------------------------


def test_deploy_has_yaml_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "monitor.yaml", "prometheus.yml", "kubernetes/kustomization.yaml"} <= (
        names
    )


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(doc, dict) for doc in docs)


# --- (b) Kubernetes schemas ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    _k8s_resources(),
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_kubernetes_manifest_matches_schema(resource: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(part) for part in exc.path)
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} at {where}: {exc.message}")


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = _docs(K8S / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying the example on every `kubectl apply -k` would overwrite the real secrets.
    assert set(listed) == manifests - {"secret.example.yaml"}


def test_example_secret_holds_only_placeholders() -> None:
    secret = _one("Secret", "monitor-secrets")
    assert "data" not in secret, "the example must not carry base64 data"
    for key, value in secret["stringData"].items():
        placeholder = value in {"", "CHANGE-ME"} or value.endswith("example.org") or value.isdigit()
        assert placeholder, f"{key} in secret.example.yaml must be a placeholder, not {value!r}"


# --- (c) compose-spec ---------------------------------------------------------------------------


def test_compose_matches_compose_spec() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_schema_rejects_a_broken_file() -> None:
    """The vendored schema really checks something: a misspelt key fails."""
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    broken = _compose()
    broken["services"]["monitor"]["restrat"] = "always"
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


def test_compose_prometheus_is_optional_and_scrapes_monitor_metrics() -> None:
    services = _compose()["services"]
    assert "profiles" not in services["redis"]
    assert "profiles" not in services["monitor"]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["metrics"]
    config_mount = next(v for v in prometheus["volumes"] if v.startswith("./prometheus.yml:"))
    assert config_mount.split(":")[1] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    (prom_config,) = _docs(DEPLOY / "prometheus.yml")
    (job,) = prom_config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = [t for group in job["static_configs"] for t in group["targets"]]
    host, port = target.split(":")
    assert host in services
    compose_config = load_settings(DEPLOY / "monitor.yaml", env={})
    assert int(port) == compose_config.health.port


def test_compose_publishes_the_health_port() -> None:
    compose_config = load_settings(DEPLOY / "monitor.yaml", env={})
    assert compose_config.health.host == "0.0.0.0"
    published = _compose()["services"]["monitor"]["ports"]
    assert any(p.rsplit(":", 1)[-1] == str(compose_config.health.port) for p in published)


# --- (d) cross-references -----------------------------------------------------------------------


def test_configmap_config_loads(k8s_settings: Settings) -> None:
    assert k8s_settings.health.host == "0.0.0.0"
    assert k8s_settings.health.port == 8080
    assert Path("/etc/monitor/rules") in k8s_settings.rules.paths


def test_config_env_vars_come_from_the_secret_or_the_pod() -> None:
    config = _one("ConfigMap", "monitor-config")["data"]["monitor.yaml"]
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", config))
    provided = set(_example_secret_env()) | set(
        _container_env(_container(_deployment(), "monitor"))
    )
    assert used <= provided, f"not provided by the Secret or the pod: {sorted(used - provided)}"


def test_redis_url_points_at_the_redis_service(k8s_settings: Settings) -> None:
    url = urlsplit(str(k8s_settings.redis.url))
    service = _one("Service", url.hostname or "")
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    statefulset = _one("StatefulSet", "redis")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(named[port])


def test_probes_hit_the_health_endpoints_on_the_config_port(k8s_settings: Settings) -> None:
    container = _container(_deployment(), "monitor")
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    assert _port_number(container, liveness["port"]) == k8s_settings.health.port
    assert _port_number(container, readiness["port"]) == k8s_settings.health.port
    annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(k8s_settings.health.port)


def test_deployment_runs_the_daemon_with_the_mounted_config() -> None:
    deployment = _deployment()
    assert deployment["spec"]["replicas"] == 2
    container = _container(deployment, "monitor")
    assert container["image"] == "monitor:latest"
    assert [*container["command"], *container["args"]] == ["monitor", "run"]
    assert _container_env(container)["MONITOR_CONFIG"] == "/etc/monitor/monitor.yaml"
    assert container["envFrom"] == [{"secretRef": {"name": "monitor-secrets"}}]
    requests = container["resources"]["requests"]
    assert requests == {"cpu": "100m", "memory": "256Mi"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_volumes_and_mounts_match() -> None:
    for kind, name in [("Deployment", "monitor"), ("StatefulSet", "redis")]:
        workload = _one(kind, name)
        spec = workload["spec"]
        volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        mounted = {
            m["name"]
            for c in spec["template"]["spec"]["containers"]
            for m in c.get("volumeMounts", [])
        }
        assert mounted == volumes, f"{kind}/{name}: mounts {mounted} vs volumes {volumes}"


def test_configmap_volumes_hold_what_the_mounts_expect() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in _container(_deployment(), "monitor")["volumeMounts"]}

    config_mount = mounts["/etc/monitor/monitor.yaml"]
    config_volume = volumes[config_mount["name"]]["configMap"]
    config_map = _one("ConfigMap", config_volume["name"])
    assert config_mount["subPath"] in {item["path"] for item in config_volume["items"]}
    assert {item["key"] for item in config_volume["items"]} <= set(config_map["data"])

    rules_mount = mounts["/etc/monitor/rules"]
    assert "subPath" not in rules_mount, "a subPath mount never sees ConfigMap updates"
    _one("ConfigMap", volumes[rules_mount["name"]]["configMap"]["name"])

    tmp = volumes[mounts["/tmp"]["name"]]  # noqa: S108 (a path inside the container)
    assert "emptyDir" in tmp


def test_rules_configmap_loads_with_the_rule_loader(tmp_path: Path) -> None:
    data = _one("ConfigMap", "monitor-rules")["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    ruleset = load_rules([tmp_path])
    assert len(ruleset) > 0


def test_rules_configmap_mirrors_the_repository_rules() -> None:
    data = _one("ConfigMap", "monitor-rules")["data"]
    in_map = {k: v for k, v in data.items() if k.endswith((".yaml", ".yml"))}
    in_repo = {
        p.name: p.read_text(encoding="utf-8") for p in sorted((REPO / "rules").glob("*.y*ml"))
    }
    stale = sorted(set(in_map) ^ set(in_repo) | {k for k in in_map if in_map[k] != in_repo.get(k)})
    assert not stale, (
        f"deploy/kubernetes/configmap-rules.yaml is out of date for {stale}; regenerate it "
        "with the command in its header"
    )


def _dockerfile_uid() -> int:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", dockerfile, flags=re.MULTILINE)
    assert users, "the Dockerfile must switch to a numeric USER"
    uid, _gid = users[-1]
    assert re.search(rf"useradd\b.*--uid {uid}\b", dockerfile)
    return int(uid)


def test_pods_run_as_the_dockerfile_user_with_a_read_only_root() -> None:
    uid = _dockerfile_uid()
    pod = _deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    context = _container(_deployment(), "monitor")["securityContext"]
    assert context["runAsUser"] == uid
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False


def test_pdb_keeps_one_of_the_replicas() -> None:
    pdb = _one("PodDisruptionBudget", "monitor")
    deployment = _deployment()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]


def test_redis_persists_its_append_only_file_on_a_claim() -> None:
    statefulset = _one("StatefulSet", "redis")
    redis = _container(statefulset, "redis")
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    data_dir = args[args.index("--dir") + 1]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in redis["volumeMounts"]}
    assert mounts[data_dir] == claim["metadata"]["name"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"


# --- (e) stopping and the daemon's absence ------------------------------------------------------


def _seconds(duration: str) -> float:
    return parse_duration(duration).total_seconds()


def test_orchestrators_wait_longer_than_the_daemons_shutdown_grace(k8s_settings: Settings) -> None:
    """The daemon ends itself within shutdown.grace; the orchestrator's SIGKILL must come
    later, or it cuts the orderly part (unacknowledged sends, lease release) short."""
    pod = _deployment()["spec"]["template"]["spec"]
    assert k8s_settings.shutdown.grace.total_seconds() < pod["terminationGracePeriodSeconds"]
    compose_config = load_settings(DEPLOY / "monitor.yaml", env={})
    stop_after = _seconds(_compose()["services"]["monitor"]["stop_grace_period"])
    assert compose_config.shutdown.grace.total_seconds() < stop_after
    assert Settings().shutdown.grace.total_seconds() < 30  # Kubernetes' default


def _alert_rules(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert all(set(rule) <= {"alert", "expr", "for", "labels", "annotations"} for rule in rules)
    return {rule["alert"]: rule for rule in rules}


def test_prometheus_loads_rules_that_alert_on_the_daemons_absence() -> None:
    """absent(up{job=...}) fires when every replica is gone (no series at all), up == 0 when
    one stops answering; both for the scrape job prometheus.yml defines, after 5 minutes, and
    critical: nothing is being alerted.  The other rules (feeds, dead letters, channels,
    delivery) page as critical only when no alert goes out at all, and wait at least as long
    (tests/app/test_prometheus_rules.py checks them with promtool)."""
    (prom_config,) = _docs(DEPLOY / "prometheus.yml")
    (job,) = prom_config["scrape_configs"]
    (rule_file,) = prom_config["rule_files"]
    prometheus = _compose()["services"]["prometheus"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounted[rule_file] == "./prometheus-rules.yml"
    (doc,) = _docs(DEPLOY / "prometheus-rules.yml")
    rules = _alert_rules(doc)
    selector = f'up{{job="{job["job_name"]}"}}'
    assert rules["MonitorAbsent"]["expr"] == f"absent({selector})"
    assert rules["MonitorDown"]["expr"] == f"{selector} == 0"
    for name in ("MonitorAbsent", "MonitorDown"):
        assert _seconds(rules[name]["for"]) == 300
        assert rules[name]["labels"]["severity"] == "critical"
    critical = {"MonitorAbsent", "MonitorDown", "MonitorManyFeedsFailing", "MonitorDeliveryStalled"}
    for name, rule in rules.items():
        assert _seconds(rule["for"]) >= 300, name
        assert rule["labels"]["severity"] == ("critical" if name in critical else "warning")
        assert rule["annotations"]["summary"]


def test_kubernetes_ships_the_same_prometheus_rules() -> None:
    data = _one("ConfigMap", "monitor-prometheus-rules")["data"]
    shipped = (DEPLOY / "prometheus-rules.yml").read_text(encoding="utf-8")
    assert data["monitor.rules.yml"] == shipped


def test_the_dead_man_url_comes_from_the_secret(k8s_settings: Settings) -> None:
    """ops.heartbeat_url is wired in both deployments, empty (off) until set, and the
    example Secret carries a placeholder for it."""
    assert k8s_settings.ops.heartbeat_url is None
    assert "HEARTBEAT_URL" in _example_secret_env()
    env = {"HEARTBEAT_URL": "https://hc-ping.com/abc"}
    compose_config = load_settings(DEPLOY / "monitor.yaml", env=env)
    assert compose_config.ops.heartbeat_url is not None
    assert compose_config.ops.heartbeat_url.get_secret_value() == env["HEARTBEAT_URL"]
