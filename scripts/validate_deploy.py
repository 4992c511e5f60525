"""Static checks of Herald's deployment files (run by scripts/validate-deploy).

- docker-compose.yml: parses, passes the Compose specification's JSON schema, every service has a
  health check; Herald's services use their `probe` command, their own database role, depend on
  PostgreSQL and on the services they call (SPEC §1) with `condition: service_healthy`.
- deploy/k8s: the base and every overlay render with kustomize; every object passes the Kubernetes
  OpenAPI schema (strict); the CloudNativePG Cluster is checked against what the services need;
  lint rules: non-root, read-only root, no privilege escalation, capabilities dropped, probes
  (gRPC for the back-ends), resource requests and limits, pinned images, a Service, ServiceAccount
  and PodDisruptionBudget per Deployment, HPAs for delivery and gateway.
- NetworkPolicies allow exactly the calls the code makes (ServiceCatalog.calls in
  Shared/HeraldServerKit/ServiceConfiguration.swift; rate-limit replicas also call each other).
- deploy/Dockerfile: hadolint, a non-root numeric USER, every executable (and crm-sandbox) copied, the
  default ports and the metrics port 9100 exposed.
- deploy/README.md names every Secret the manifests use.
- Metrics: every Deployment serves /metrics on 9100 (HERALD_METRICS_PORT, a container port named
  `metrics`, prometheus.io/* pod annotations) and NetworkPolicies let only namespace `monitoring`
  reach 9100 (and it nothing else); compose sets HERALD_METRICS_PORT=9100 and its `monitoring`
  profile (pinned Prometheus and Grafana) loads deploy/prometheus/compose.yml, which scrapes every
  service on 9100, and the dashboard; deploy/prometheus/prometheus.yml scrapes the local stack on
  the default metrics ports (ServiceConfiguration.defaultMetricsPort); every query of
  deploy/grafana/herald-dashboard.json uses only metric names that the Swift sources under
  Services/ and Shared/ define at the time of the check (and Hummingbird's MetricsMiddleware).

`--self-test` breaks the files in a temporary copy, one way at a time, and checks that each
breakage is reported: the checks can fail.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
SERVICES = ["campaign", "delivery", "ratelimit", "sync", "verification", "gateway"]
BACK_ENDS = SERVICES[:-1]
# Rate-limit replicas forward checks to the replica that owns a key (Services/RateLimit/Library/Membership.swift).
PEER_CALLS = {"ratelimit"}
# Every container serves /metrics on this port (HERALD_METRICS_PORT), so one scrape rule and one
# NetworkPolicy fit all; only pods in this namespace may reach it.
METRICS_PORT = 9100
MONITORING_NAMESPACE = "monitoring"
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": "/metrics"}


def service_catalog(root: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """ServiceCatalog.calls and .defaultPorts, read from the Swift source."""
    source = (root / "Shared/HeraldServerKit/ServiceConfiguration.swift").read_text()
    calls_block = re.search(r"static let calls: \[String: \[String\]\] = \[(.*?)\n  \]", source, re.S)
    ports_block = re.search(r"static let defaultPorts: \[String: Int\] = \[(.*?)\]", source, re.S)
    if not calls_block or not ports_block:
        raise SystemExit("validate-deploy: ServiceCatalog.calls or .defaultPorts not found in ServiceConfiguration.swift")
    calls: dict[str, list[str]] = {}
    for name, targets in re.findall(r'"(\w+)":\s*(\[[^\]]*\]|backEnds)', calls_block.group(1)):
        calls[name] = list(BACK_ENDS) if targets == "backEnds" else re.findall(r'"(\w+)"', targets)
    ports = {name: int(port) for name, port in re.findall(r'"(\w+)":\s*(\d+)', ports_block.group(1))}
    return calls, ports


def default_metrics_ports(root: Path, ports: dict[str, int]) -> dict[str, int]:
    """Where each process serves /metrics when HERALD_METRICS_PORT is not set
    (ServiceConfiguration.defaultMetricsPort: the service's port + an offset), read from the source."""
    source = (root / "Shared/HeraldServerKit/ServiceConfiguration.swift").read_text()
    function = re.search(r"static func defaultMetricsPort\(servicePort: Int\) -> Int \{(.*?)\n  \}", source, re.S)
    offset = re.search(r"servicePort \+ (\d+)", function.group(1)) if function else None
    if not offset:
        raise SystemExit("validate-deploy: ServiceConfiguration.defaultMetricsPort (servicePort + N) not found in ServiceConfiguration.swift")
    return {name: port + int(offset.group(1)) for name, port in ports.items()}


def callers_of(service: str, calls: dict[str, list[str]]) -> set[str]:
    found = {caller for caller, targets in calls.items() if service in targets}
    return found | ({service} if service in PEER_CALLS else set())


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def check(self, condition: bool, message: str) -> bool:
        if not condition:
            self.errors.append(message)
        return condition


# MARK: - docker-compose.yml


def check_compose(root: Path, venv_bin: Path, calls: dict[str, list[str]], report: Report) -> None:
    path = root / "docker-compose.yml"
    try:
        compose = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        report.check(False, f"docker-compose.yml does not parse: {error}")
        return
    schema = subprocess.run(
        [str(venv_bin / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True)
    report.check(schema.returncode == 0,
                 f"docker-compose.yml fails the Compose specification: {(schema.stdout + schema.stderr).strip()}")
    services = compose.get("services") or {}
    for name, service in services.items():
        report.check(bool((service.get("healthcheck") or {}).get("test")) and not (service.get("healthcheck") or {}).get("disable"),
                     f"docker-compose.yml: service {name} has no healthcheck")
    postgres_environment = (services.get("postgres") or {}).get("environment") or {}
    for name in SERVICES:
        service = services.get(name)
        if not report.check(service is not None, f"docker-compose.yml: no service {name}"):
            continue
        where = f"docker-compose.yml: {name}"
        report.check(service.get("command") == [name], f"{where}: command is {service.get('command')}, not [{name!r}]")
        test = (service.get("healthcheck") or {}).get("test")
        report.check(test == ["CMD", name, "probe"], f"{where}: healthcheck is {test}, not [CMD, {name}, probe]")
        report.check(service.get("read_only") is True, f"{where}: root file system not read_only")
        environment = service.get("environment") or {}
        report.check(str(environment.get("HERALD_METRICS_PORT", "")) == str(METRICS_PORT),
                     f"{where}: HERALD_METRICS_PORT is {environment.get('HERALD_METRICS_PORT')!r}, not {METRICS_PORT} (the monitoring profile scrapes 9100)")
        url = str(environment.get("HERALD_DATABASE_URL", ""))
        role = re.match(r"postgres://([^:@]+):\$\{(\w+):-([^}]*)\}@", url)
        if report.check(role is not None and role.group(1) == f"herald_{name}",
                        f"{where}: HERALD_DATABASE_URL does not connect as herald_{name}"):
            variable, default = role.group(2), role.group(3)
            given = str(postgres_environment.get(variable, ""))
            report.check(given == f"${{{variable}:-{default}}}",
                         f"{where}: password {variable} (default {default!r}) differs from what postgres sets ({given!r})")
        depends = service.get("depends_on") or {}
        needed = {"postgres"} | set(calls.get(name, []))
        for dependency in sorted(needed):
            condition = (depends.get(dependency) or {}).get("condition") if isinstance(depends, dict) else None
            report.check(condition == "service_healthy",
                         f"{where}: does not depend on {dependency} with condition service_healthy")
    sandbox = services.get("crm-sandbox") or {}
    report.check((sandbox.get("healthcheck") or {}).get("test") == ["CMD", "crm-sandbox", "probe"],
                 "docker-compose.yml: no crm-sandbox service (the demo CRM) probed with 'crm-sandbox probe'")
    gateway_ports = (services.get("gateway") or {}).get("ports") or []
    report.check(bool(gateway_ports), "docker-compose.yml: the gateway publishes no port")
    check_compose_monitoring(root, services, report)


def pinned(image: str) -> bool:
    tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
    return "@sha256:" in image or (bool(tag) and tag != "latest" and "$" not in image)


def mounts(service: dict) -> dict[str, str]:
    """A compose service's bind mounts, container path -> host path (short syntax)."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str) and volume.startswith("./"):
            host, _, rest = volume.partition(":")
            found[rest.partition(":")[0]] = host[2:].rstrip("/")
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            found[str(volume.get("target"))] = str(volume.get("source", "")).removeprefix("./").rstrip("/")
    return found


def check_compose_monitoring(root: Path, services: dict, report: Report) -> None:
    """The optional `monitoring` profile: pinned Prometheus with deploy/prometheus/compose.yml, pinned
    Grafana provisioned with the data source and the dashboard."""
    where = "docker-compose.yml: monitoring profile"
    prometheus, grafana = services.get("prometheus"), services.get("grafana")
    if not report.check(prometheus is not None and grafana is not None, f"{where}: needs the services prometheus and grafana"):
        return
    for name, service in (("prometheus", prometheus), ("grafana", grafana)):
        report.check("monitoring" in (service.get("profiles") or []), f"{where}: {name} is not in profile monitoring (it would always start)")
        image = str(service.get("image", ""))
        report.check(pinned(image), f"{where}: {name}'s image {image!r} is not pinned to a version")
    flags = [str(a) for a in prometheus.get("command") or []]
    config = next((a.partition("=")[2] for a in flags if a.startswith("--config.file=")), None)
    bound = mounts(prometheus)
    folder = next((target for target in bound if config and config.startswith(target.rstrip("/") + "/")), None)
    host_file = bound.get(config or "") or (f"{bound[folder]}/{config[len(folder.rstrip('/')) + 1:]}" if folder and config else None)
    report.check(host_file == "deploy/prometheus/compose.yml",
                 f"{where}: prometheus does not load deploy/prometheus/compose.yml (--config.file={config}, mounts {bound})")
    bound = mounts(grafana)
    report.check(bound.get("/etc/grafana/provisioning") == "deploy/grafana/provisioning",
                 f"{where}: grafana does not mount deploy/grafana/provisioning at /etc/grafana/provisioning")
    dashboard = next((target for target, host in bound.items() if host == "deploy/grafana/herald-dashboard.json"), None)
    provider_folders: list[str] = []
    for file in sorted((root / "deploy/grafana/provisioning/dashboards").glob("*.y*ml")):
        providers = load_yaml(file, root, report).get("providers") or []
        provider_folders += [str((p.get("options") or {}).get("path", "")).rstrip("/") for p in providers]
    report.check(dashboard is not None and str(Path(dashboard).parent) in provider_folders,
                 f"{where}: grafana does not mount deploy/grafana/herald-dashboard.json into a folder a dashboard provider "
                 f"(deploy/grafana/provisioning/dashboards) loads ({provider_folders})")
    sources: list[dict] = []
    for file in sorted((root / "deploy/grafana/provisioning/datasources").glob("*.y*ml")):
        sources += load_yaml(file, root, report).get("datasources") or []
    report.check(any(s.get("type") == "prometheus" and "//prometheus:9090" in str(s.get("url", "")) for s in sources),
                 f"{where}: no Grafana data source (deploy/grafana/provisioning/datasources) reads http://prometheus:9090")


# MARK: - Kubernetes


def render(kustomization: Path, report: Report) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", str(kustomization)], capture_output=True, text=True)
    if not report.check(result.returncode == 0, f"kustomize {kustomization}: {result.stderr.strip()}"):
        return []
    return [document for document in yaml.safe_load_all(result.stdout) if document]


# The CloudNativePG fields these manifests may use (postgresql.cnpg.io/v1 Cluster; no schema for
# it is installable here, so misspelt or misplaced fields are caught by these lists).
CNPG_SPEC_FIELDS = {
    "affinity", "backup", "bootstrap", "certificates", "description", "enablePDB", "enableSuperuserAccess", "env",
    "envFrom", "ephemeralVolumeSource", "ephemeralVolumesSizeLimit", "externalClusters", "failoverDelay", "imageCatalogRef",
    "imageName", "imagePullPolicy", "imagePullSecrets", "inheritedMetadata", "instances", "livenessProbeTimeout", "logLevel",
    "managed", "maxSyncReplicas", "minSyncReplicas", "monitoring", "nodeMaintenanceWindow", "plugins", "postgresGID",
    "postgresUID", "postgresql", "primaryUpdateMethod", "primaryUpdateStrategy", "priorityClassName", "probes",
    "projectedVolumeTemplate", "replica", "replicationSlots", "resources", "schedulerName", "seccompProfile",
    "serviceAccountTemplate", "smartShutdownTimeout", "startDelay", "stopDelay", "storage", "superuserSecret",
    "switchoverDelay", "tablespaces", "topologySpreadConstraints", "walStorage",
}
CNPG_NESTED_FIELDS = {
    "storage": {"size", "storageClass", "resizeInUseVolumes", "pvcTemplate"},
    "affinity": {"enablePodAntiAffinity", "podAntiAffinityType", "topologyKey", "nodeSelector", "nodeAffinity", "tolerations",
                 "additionalPodAntiAffinity", "additionalPodAffinity"},
    "postgresql": {"parameters", "pg_hba", "pg_ident", "synchronous", "shared_preload_libraries", "ldap", "promotionTimeout",
                   "enableAlterSystem", "syncReplicaElectionConstraint", "extensions"},
    "bootstrap": {"initdb", "recovery", "pg_basebackup"},
    "managed": {"roles", "services"},
}
CNPG_INITDB_FIELDS = {
    "database", "owner", "secret", "options", "dataChecksums", "encoding", "localeCollate", "localeCType", "locale",
    "localeProvider", "icuLocale", "icuRules", "builtinLocale", "walSegmentSize", "postInitSQL", "postInitApplicationSQL",
    "postInitTemplateSQL", "postInitSQLRefs", "postInitApplicationSQLRefs", "postInitTemplateSQLRefs", "import",
}
CNPG_ROLE_FIELDS = {
    "name", "ensure", "comment", "login", "superuser", "createdb", "createrole", "inherit", "replication", "bypassrls",
    "connectionLimit", "validUntil", "inRoles", "passwordSecret", "disablePassword",
}


def check_cluster_fields(spec: dict, what: str, report: Report) -> None:
    def unknown(found: dict, allowed: set[str], at: str) -> None:
        for key in sorted(set(found) - allowed):
            report.check(False, f"{what}: unknown field {at}{key}")

    unknown(spec, CNPG_SPEC_FIELDS, "spec.")
    for field, allowed in CNPG_NESTED_FIELDS.items():
        if isinstance(spec.get(field), dict):
            unknown(spec[field], allowed, f"spec.{field}.")
    initdb = (spec.get("bootstrap") or {}).get("initdb")
    if isinstance(initdb, dict):
        unknown(initdb, CNPG_INITDB_FIELDS, "spec.bootstrap.initdb.")
    for index, role in enumerate((spec.get("managed") or {}).get("roles") or []):
        unknown(role, CNPG_ROLE_FIELDS, f"spec.managed.roles[{index}].")
        report.check(role.get("ensure", "present") in ("present", "absent"), f"{what}: role {role.get('name')}: ensure is {role.get('ensure')}")
    report.check(spec.get("primaryUpdateStrategy", "unsupervised") in ("unsupervised", "supervised"),
                 f"{what}: primaryUpdateStrategy is {spec.get('primaryUpdateStrategy')}")
    report.check((spec.get("affinity") or {}).get("podAntiAffinityType", "preferred") in ("preferred", "required"),
                 f"{what}: affinity.podAntiAffinityType is {(spec.get('affinity') or {}).get('podAntiAffinityType')}")


def check_cluster(cluster: dict, objects: list[dict], where: str, report: Report) -> None:
    spec = cluster.get("spec") or {}
    name = cluster["metadata"]["name"]
    check_cluster_fields(spec, f"{where}: Cluster {name}", report)
    report.check(isinstance(spec.get("instances"), int) and spec["instances"] >= 3,
                 f"{where}: Cluster {name} has {spec.get('instances')} instances, fewer than 3")
    report.check(bool((spec.get("storage") or {}).get("size")), f"{where}: Cluster {name} has no storage size")
    roles = {role.get("name"): role for role in (spec.get("managed") or {}).get("roles") or []}
    for service in SERVICES:
        role = roles.get(f"herald_{service}")
        if report.check(role is not None, f"{where}: Cluster {name} does not manage role herald_{service}"):
            report.check(role.get("login") is True and (role.get("passwordSecret") or {}).get("name") == f"herald-db-{service}",
                         f"{where}: role herald_{service} needs login and passwordSecret herald-db-{service}")
    verification = roles.get("herald_verification") or {}
    report.check("herald_readonly" in (verification.get("inRoles") or []),
                 f"{where}: herald_verification is not in herald_readonly")
    refs = (((spec.get("bootstrap") or {}).get("initdb") or {}).get("postInitApplicationSQLRefs") or {}).get("configMapRefs") or []
    config_maps = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ConfigMap"}
    for ref in refs:
        data = (config_maps.get(ref.get("name")) or {}).get("data") or {}
        report.check(ref.get("key") in data, f"{where}: bootstrap SQL {ref.get('name')}/{ref.get('key')} is not in the manifests")
    report.check(bool(refs), f"{where}: Cluster {name} runs no bootstrap SQL (the per-service roles)")


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    def matches(expression: dict) -> bool:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In":
            return labels.get(key) in values
        if operator == "NotIn":
            return labels.get(key) not in values
        if operator == "Exists":
            return key in labels
        if operator == "DoesNotExist":
            return key not in labels
        return False

    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items()) \
        and all(matches(expression) for expression in selector.get("matchExpressions") or [])


def check_workload(deployment: dict, objects: list[dict], ports: dict[str, int], where: str, report: Report) -> None:
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"].get("labels") or {}
    spec = pod["spec"]
    what = f"{where}: Deployment {name}"
    security = spec.get("securityContext") or {}
    report.check(security.get("runAsNonRoot") is True, f"{what}: runAsNonRoot is not set")
    report.check(security.get("runAsUser", 0) != 0, f"{what}: runs as user 0")
    report.check(spec.get("automountServiceAccountToken") is False, f"{what}: mounts a service account token")
    containers = spec.get("containers") or []
    for container in containers + (spec.get("initContainers") or []):
        cwhere = f"{what}, container {container['name']}"
        context = container.get("securityContext") or {}
        report.check(context.get("readOnlyRootFilesystem") is True, f"{cwhere}: root file system is not read-only")
        report.check(context.get("allowPrivilegeEscalation") is False, f"{cwhere}: allows privilege escalation")
        report.check("ALL" in ((context.get("capabilities") or {}).get("drop") or []), f"{cwhere}: does not drop ALL capabilities")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                report.check(resource in (resources.get(kind) or {}), f"{cwhere}: no {resource} {kind[:-1]}")
        image = container.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
        report.check(bool(tag) and tag != "latest" or "@sha256:" in image, f"{cwhere}: image {image!r} is not pinned to a tag")
        variables = [v.get("name") for v in container.get("env") or []]
        if "HERALD_DATABASE_URL" in variables:
            password = next(v for v in container["env"] if v.get("name") == "HERALD_DATABASE_PASSWORD") \
                if "HERALD_DATABASE_PASSWORD" in variables else {}
            ref = (password.get("valueFrom") or {}).get("secretKeyRef") or {}
            report.check(ref.get("name") == f"herald-db-{name}" and ref.get("key") == "password",
                         f"{cwhere}: HERALD_DATABASE_PASSWORD does not come from Secret herald-db-{name}, key password")
            url = next(v for v in container["env"] if v.get("name") == "HERALD_DATABASE_URL").get("value", "")
            report.check(url.startswith(f"postgres://herald_{name}:$(HERALD_DATABASE_PASSWORD)@"),
                         f"{cwhere}: HERALD_DATABASE_URL does not connect as herald_{name} with $(HERALD_DATABASE_PASSWORD)")
            report.check("HERALD_DATABASE_PASSWORD" in variables
                         and variables.index("HERALD_DATABASE_PASSWORD") < variables.index("HERALD_DATABASE_URL"),
                         f"{cwhere}: HERALD_DATABASE_PASSWORD must be defined before HERALD_DATABASE_URL uses it")
        else:
            report.check(False, f"{cwhere}: no HERALD_DATABASE_URL")
    main = next((c for c in containers if c["name"] == name), None)
    if not report.check(main is not None, f"{what}: no container named {name}"):
        return
    report.check(main.get("command") == [name], f"{what}: command is {main.get('command')}")
    port = ports.get(name)
    declared = [p.get("containerPort") for p in main.get("ports") or [] if p.get("name") != "metrics"]
    report.check(declared == [port], f"{what}: container ports {declared}, expected [{port}] (and metrics)")
    check_metrics_endpoint(pod, main, what, report)
    for probe in ("readinessProbe", "livenessProbe"):
        found = main.get(probe) or {}
        if name in BACK_ENDS:
            report.check((found.get("grpc") or {}).get("port") == port, f"{what}: {probe} is not gRPC health on port {port}")
        else:
            report.check("httpGet" in found, f"{what}: {probe} is not an HTTP probe")
    readiness = (main.get("readinessProbe") or {}).get("grpc") or {}
    report.check(readiness.get("service", "") == "", f"{what}: readinessProbe asks for service {readiness.get('service')!r}, not the whole process")
    liveness = (main.get("livenessProbe") or {}).get("grpc") or {}
    if name in BACK_ENDS:
        report.check(liveness.get("service") == "liveness", f"{what}: livenessProbe does not ask for service 'liveness'")
    migrate = [c for c in spec.get("initContainers") or [] if c.get("command") == [name, "migrate"]]
    report.check(len(migrate) == 1, f"{what}: no init container running '{name} migrate'")

    def find(kind: str) -> list[dict]:
        return [o for o in objects if o.get("kind") == kind]

    report.check(any(o["metadata"]["name"] == spec.get("serviceAccountName") for o in find("ServiceAccount")),
                 f"{what}: ServiceAccount {spec.get('serviceAccountName')} is missing")
    services = [s for s in find("Service") if selects({"matchLabels": s["spec"].get("selector") or {}}, labels)]
    report.check(len(services) == 1 and [p.get("port") for p in services[0]["spec"].get("ports", [])] == [port],
                 f"{what}: no Service on port {port} selecting its pods")
    report.check(any(selects(o["spec"].get("selector") or {}, labels) for o in find("PodDisruptionBudget")),
                 f"{what}: no PodDisruptionBudget")
    autoscaled = any((o["spec"].get("scaleTargetRef") or {}).get("name") == name for o in find("HorizontalPodAutoscaler"))
    if name in ("delivery", "gateway"):
        report.check(autoscaled, f"{what}: no HorizontalPodAutoscaler")


def check_metrics_endpoint(pod: dict, main: dict, what: str, report: Report) -> None:
    """The pod serves /metrics on METRICS_PORT and says so to Prometheus' pod discovery."""
    metrics = [p for p in main.get("ports") or [] if p.get("name") == "metrics"]
    report.check(len(metrics) == 1 and metrics[0].get("containerPort") == METRICS_PORT and metrics[0].get("protocol", "TCP") == "TCP",
                 f"{what}: no container port named metrics on {METRICS_PORT} (found {metrics})")
    environment = {v.get("name"): v for v in main.get("env") or []}
    setting = environment.get("HERALD_METRICS_PORT") or {}
    report.check(str(setting.get("value")) == str(METRICS_PORT) and "valueFrom" not in setting,
                 f"{what}: HERALD_METRICS_PORT is not set to \"{METRICS_PORT}\" in the container's env")
    annotations = pod["metadata"].get("annotations") or {}
    for key, value in SCRAPE_ANNOTATIONS.items():
        report.check(annotations.get(key) == value,
                     f"{what}: pod annotation {key} is {annotations.get(key)!r}, not {value!r} (Prometheus' pod discovery)")


def from_monitoring(source: dict) -> bool:
    """A NetworkPolicy peer that is pods of the monitoring namespace (all, or some by podSelector)."""
    namespace = source.get("namespaceSelector") or {}
    return set(source) <= {"namespaceSelector", "podSelector"} and not namespace.get("matchExpressions") \
        and namespace.get("matchLabels") == {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}


def rule_ports(rule: dict) -> set | None:
    """The ports an ingress rule opens (named port `metrics` counted as METRICS_PORT); None: all."""
    ports = rule.get("ports") or []
    if not ports or any("port" not in p for p in ports):
        return None
    return {METRICS_PORT if p.get("port") == "metrics" else p.get("port") for p in ports}


def is_metrics_rule(rule: dict) -> bool:
    sources = rule.get("from") or []
    return bool(sources) and all(from_monitoring(s) for s in sources) and rule_ports(rule) == {METRICS_PORT}


def check_metrics_policies(policies: list[dict], where: str, report: Report) -> None:
    """Every Herald pod's metrics port is open to the monitoring namespace, to nothing else, and the
    monitoring namespace reaches nothing else."""
    for service in SERVICES:
        labels = {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "herald"}
        mine = [p for p in policies if "podSelector" in p["spec"] and selects(p["spec"]["podSelector"], labels)
                and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])]
        scraped = False
        for policy in mine:
            name = policy["metadata"]["name"]
            for rule in policy["spec"].get("ingress") or []:
                sources = rule.get("from") or []
                opened = rule_ports(rule)
                if is_metrics_rule(rule):
                    scraped = True
                    continue
                if opened is None or METRICS_PORT in opened:
                    others = [s for s in sources if not from_monitoring(s)] or ([] if sources else ["anyone"])
                    report.check(not others, f"{where}: NetworkPolicy {name} lets {others} reach {service}'s metrics port "
                                             f"{METRICS_PORT}; only namespace {MONITORING_NAMESPACE} may")
                if any(from_monitoring(s) for s in sources) and opened != {METRICS_PORT}:
                    report.check(False, f"{where}: NetworkPolicy {name} lets namespace {MONITORING_NAMESPACE} reach {service} on "
                                        f"{sorted(opened) if opened else 'every port'}; it may reach only {METRICS_PORT}")
        report.check(scraped, f"{where}: no NetworkPolicy lets namespace {MONITORING_NAMESPACE} reach {service}'s metrics port "
                              f"{METRICS_PORT}")


def check_network_policies(objects: list[dict], calls: dict[str, list[str]], ports: dict[str, int], where: str,
                           report: Report) -> None:
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    report.check(any(p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
                     for p in policies), f"{where}: no default-deny ingress NetworkPolicy")
    check_metrics_policies(policies, where, report)
    for service in BACK_ENDS:
        labels = {"app.kubernetes.io/name": service}
        mine = [p for p in policies if p["spec"].get("podSelector") and selects(p["spec"]["podSelector"], labels)]
        allowed: set[str] = set()
        policy_ports: set[int] = set()
        for policy in mine:
            for rule in policy["spec"].get("ingress") or []:
                if is_metrics_rule(rule):
                    continue  # Prometheus (check_metrics_policies)
                sources = rule.get("from")
                if not sources:
                    allowed.add("*anyone*")
                for source in sources or []:
                    name = ((source.get("podSelector") or {}).get("matchLabels") or {}).get("app.kubernetes.io/name")
                    # A namespaceSelector or ipBlock would let pods elsewhere in.
                    plain = set(source) == {"podSelector"}
                    allowed.add(name if name and plain else f"*{source}*")
                policy_ports |= {p.get("port") for p in rule.get("ports") or []}
        expected = callers_of(service, calls)
        report.check(allowed == expected,
                     f"{where}: NetworkPolicy lets {sorted(allowed)} call {service}; the code's callers are {sorted(expected)}")
        report.check(policy_ports == {ports[service]}, f"{where}: NetworkPolicy for {service} opens ports {sorted(policy_ports)}")
    gateway = [p for p in policies if p["spec"].get("podSelector") and selects(p["spec"]["podSelector"], {"app.kubernetes.io/name": "gateway"})]
    report.check(any(any(ports["gateway"] in {q.get("port") for q in rule.get("ports") or []} for rule in p["spec"].get("ingress") or [])
                     for p in gateway), f"{where}: no NetworkPolicy lets clients reach the gateway on {ports['gateway']}")
    database = [p for p in policies if ((p["spec"].get("podSelector") or {}).get("matchLabels") or {}).get("cnpg.io/cluster")]
    rules = [rule for p in database for rule in p["spec"].get("ingress") or []]
    services_in = any(5432 in {q.get("port") for q in rule.get("ports") or []} and any(
        set(((s.get("podSelector") or {}).get("matchExpressions") or [{}])[0].get("values") or []) >= set(SERVICES)
        for s in rule.get("from") or []) for rule in rules)
    report.check(services_in, f"{where}: no NetworkPolicy lets the six services reach PostgreSQL on 5432")
    operator_in = any(((s.get("namespaceSelector") or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name") == "cnpg-system"
                      for rule in rules for s in rule.get("from") or [])
    report.check(operator_in, f"{where}: no NetworkPolicy lets the CloudNativePG operator (cnpg-system) reach the database pods")


def check_kubernetes(root: Path, calls: dict[str, list[str]], ports: dict[str, int], report: Report) -> list[str]:
    secrets: set[str] = set()
    folders = [root / "deploy/k8s/base"] + sorted(p for p in (root / "deploy/k8s/overlays").iterdir() if p.is_dir())
    for folder in folders:
        where = str(folder.relative_to(root))
        objects = render(folder, report)
        if not objects:
            continue
        is_overlay = "overlays" in folder.parts
        for item in objects:
            kind, name = item.get("kind"), (item.get("metadata") or {}).get("name")
            if kind == "Cluster" and item.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
                check_cluster(item, objects, where, report)
                continue
            try:
                kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.path)
                report.check(False, f"{where}: {kind} {name}: {error.message}" + (f" (at {path})" if path else ""))
            except kubernetes_validate.SchemaNotFoundError:
                report.check(False, f"{where}: {kind} {name}: no schema for {item.get('apiVersion')}/{kind}")
        deployments = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Deployment"}
        report.check(sorted(deployments) == sorted(SERVICES), f"{where}: Deployments {sorted(deployments)}, expected {sorted(SERVICES)}")
        for deployment in deployments.values():
            try:
                check_deployment(deployment, objects, ports, is_overlay, secrets, where, report)
            except (KeyError, TypeError, AttributeError, IndexError) as error:
                report.check(False, f"{where}: Deployment {deployment['metadata']['name']} is malformed (missing {error})")
        try:
            check_network_policies(objects, calls, ports, where, report)
        except (KeyError, TypeError, AttributeError) as error:
            report.check(False, f"{where}: a NetworkPolicy is malformed (missing {error})")
    return sorted(secrets)


def check_deployment(deployment: dict, objects: list[dict], ports: dict[str, int], is_overlay: bool, secrets: set[str],
                     where: str, report: Report) -> None:
    pod = deployment["spec"]["template"]["spec"]
    if is_overlay or not pod["containers"][0].get("image", "").startswith("herald"):
        check_workload(deployment, objects, ports, where, report)
    else:
        # The base leaves the image to an overlay (`images:`); check the rest with a stand-in tag.
        pinned = copy.deepcopy(deployment)
        pinned_pod = pinned["spec"]["template"]["spec"]
        for container in pinned_pod["containers"] + pinned_pod.get("initContainers", []):
            container["image"] = container["image"] + ":base"
        check_workload(pinned, objects, ports, where, report)
    for container in pod["containers"]:
        for variable in container.get("env") or []:
            ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secrets.add(ref["name"])
    for volume in pod.get("volumes") or []:
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])


# MARK: - Metrics: Prometheus configurations and the Grafana dashboard


# The gateway's HTTP metrics come from Hummingbird's MetricsMiddleware (Sources/Hummingbird/
# Middleware/MetricsMiddleware.swift of this version); swift-prometheus turns their dots into
# underscores, in names and in labels (http.route -> http_route, http.request.method ->
# http_request_method, http.response.status_code -> http_response_status_code, error.type ->
# error_type). When Package.resolved moves Hummingbird, read that file again and update these.
HUMMINGBIRD_VERSION = "2.28.1"
HUMMINGBIRD_METRICS = {
    "hb.requests": "counter",
    "hb.request.errors": "counter",
    "http.server.request.duration": "histogram",  # a swift-metrics Timer
    "http.server.active_requests": "gauge",  # a swift-metrics Meter
}
# How the Swift sources define metrics (swift-metrics' types and swift-prometheus' registry, and
# MetricsScrape's helpers); the kind says which series Prometheus sees.
SWIFT_METRIC_PATTERNS = [
    (re.compile(r'\b(?:Counter|FloatingPointCounter)\(\s*label:\s*"([^"]+)"'), "counter"),
    (re.compile(r'\bTimer\(\s*label:\s*"([^"]+)"'), "histogram"),
    (re.compile(r'\b(?:Gauge|Meter)\(\s*label:\s*"([^"]+)"'), "gauge"),
    (re.compile(r'\bRecorder\(\s*label:\s*"([^"]+)"'), "recorder"),
    (re.compile(r'\.make(?:Counter|FloatingPointCounter)\(\s*name:\s*"([^"]+)"'), "counter"),
    (re.compile(r'\.makeGauge\(\s*name:\s*"([^"]+)"'), "gauge"),
    # The same through a descriptor: make…(descriptor: MetricNameDescriptor(metricName: "…", unitName: "", …)).
    (re.compile(r'\.make(?:Counter|FloatingPointCounter)\(\s*descriptor:\s*MetricNameDescriptor\(\s*metricName:\s*"([^"]+)",\s*unitName:\s*""'), "counter"),
    (re.compile(r'\.makeGauge\(\s*descriptor:\s*MetricNameDescriptor\(\s*metricName:\s*"([^"]+)",\s*unitName:\s*""'), "gauge"),
    (re.compile(r'\.make(?:DurationHistogram|ValueHistogram)\(\s*name:\s*"([^"]+)"'), "histogram"),
    (re.compile(r'\.gauge\(\s*"([^"]+)"'), "gauge"),
    (re.compile(r'\.counter\(\s*"([^"]+)"'), "counter"),
    (re.compile(r'\.histogram\(\s*"([^"]+)"'), "histogram"),
]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "atan2",
    "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}


def prometheus_name(name: str) -> str:
    """The name swift-prometheus registers for a swift-metrics label (its fixPrometheusName)."""
    fixed = re.sub(r"[^A-Za-z0-9_:]", "_", name)
    return "_" + fixed[1:] if fixed[:1].isdigit() else fixed


def call_arguments(source: str, open_paren: int) -> str:
    """The text of a call's arguments, from the parenthesis at open_paren to its match."""
    depth, index, quoted = 0, open_paren, False
    while index < len(source):
        character = source[index]
        if quoted:
            if character == "\\":
                index += 1
            elif character == '"':
                quoted = False
        elif character == '"':
            quoted = True
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth == 0:
                return source[open_paren + 1:index]
        index += 1
    return source[open_paren + 1:]


def hummingbird_version(root: Path) -> str | None:
    """The Hummingbird version the build uses: Package.resolved's pin once a build has resolved
    it, else the exact version Package.swift asks for (a fresh clone has no Package.resolved)."""
    try:
        pins = json.loads((root / "Package.resolved").read_text()).get("pins") or []
        return next(((p.get("state") or {}).get("version") for p in pins if p.get("identity") == "hummingbird"), None)
    except (OSError, json.JSONDecodeError):
        pass
    try:
        manifest = (root / "Package.swift").read_text()
    except OSError:
        return None
    match = re.search(r'hummingbird-project/hummingbird(?:\.git)?",\s*exact:\s*"([^"]+)"', manifest)
    return match.group(1) if match else None


def swift_metrics(root: Path, report: Report) -> dict[str, tuple[str, str]]:
    """Every metric the Swift sources under Services/ and Shared/ define, read now: Prometheus
    name -> (kind, where), kind counter, gauge or histogram."""
    defined: dict[str, tuple[str, str]] = {}
    uses_hummingbird_metrics = False
    for folder in ("Services", "Shared"):
        for path in sorted((root / folder).rglob("*.swift")):
            source = path.read_text(errors="replace")
            where = str(path.relative_to(root))
            uses_hummingbird_metrics |= re.search(r"\bMetricsMiddleware\(\)", source) is not None
            for pattern, kind in SWIFT_METRIC_PATTERNS:
                for match in pattern.finditer(source):
                    found = kind
                    if kind == "recorder":
                        # swift-metrics' Recorder aggregates (a histogram) unless aggregate: false (a gauge).
                        arguments = call_arguments(source, source.index("(", match.start()))
                        found = "gauge" if re.search(r"\baggregate:\s*false\b", arguments) else "histogram"
                    defined.setdefault(prometheus_name(match.group(1)), (found, where))
    if uses_hummingbird_metrics:
        version = hummingbird_version(root)
        if report.check(version == HUMMINGBIRD_VERSION,
                        f"scripts/validate_deploy.py: the build uses Hummingbird {version}, HUMMINGBIRD_METRICS were read from "
                        f"{HUMMINGBIRD_VERSION}: check its MetricsMiddleware.swift and update them"):
            for label, kind in HUMMINGBIRD_METRICS.items():
                defined.setdefault(prometheus_name(label), (kind, f"Hummingbird {HUMMINGBIRD_VERSION} MetricsMiddleware"))
    return defined


def exposed_series(defined: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The series names Prometheus scrapes (histograms as _bucket, _sum, _count; swift-prometheus
    writes counters' names as given, adding no _total) -> the metric's name."""
    series = {}
    for name, (kind, _) in defined.items():
        for suffix in HISTOGRAM_SUFFIXES if kind == "histogram" else ("",):
            series[name + suffix] = name
    return series


def promql_metric_names(expr: str) -> tuple[set[str], list[str]]:
    """The metric names a PromQL expression (with Grafana's $variables) reads, and problems."""
    problems = []
    names = set(re.findall(r'__name__\s*=\s*"([^"]*)"', expr))
    if re.search(r"__name__\s*(=~|!=|!~)", expr):
        problems.append("selects metrics by a __name__ pattern (name them, so they can be checked)")
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)", text):
        name = match.group(1)
        if text[match.end():].lstrip().startswith("(") or name.lower() in PROMQL_KEYWORDS:
            continue  # a function, an aggregation or a keyword
        names.add(name)
    return names, problems


def dashboard_panels(dashboard: dict):
    """Every panel, those inside rows included, in order."""
    def walk(panels: list):
        for panel in panels or []:
            yield panel
            yield from walk(panel.get("panels") or [])

    return walk(dashboard.get("panels") or [])


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = [(f"panel {panel.get('title')!r}", target["expr"])
               for panel in dashboard_panels(dashboard) for target in panel.get("targets") or [] if target.get("expr")]
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else str(query or "")
        values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
        result = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
        if values or result:
            queries.append((f"variable {variable.get('name')!r}", (values or result).group(1)))
    return queries


def check_dashboard(root: Path, report: Report) -> None:
    path = root / "deploy/grafana/herald-dashboard.json"
    where = "deploy/grafana/herald-dashboard.json"
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        report.check(False, f"{where} does not parse: {error}")
        return
    if not report.check(isinstance(dashboard, dict), f"{where}: not a dashboard object"):
        return
    report.check(isinstance(dashboard.get("schemaVersion"), int) and dashboard["schemaVersion"] >= 39,
                 f"{where}: schemaVersion is {dashboard.get('schemaVersion')!r}, expected 39 or later")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    source = variables.get("datasource") or {}
    report.check(source.get("type") == "datasource" and source.get("query") == "prometheus",
                 f"{where}: no `datasource` template variable of type datasource for Prometheus")
    report.check((variables.get("service") or {}).get("type") == "query", f"{where}: no `service` template variable (a query)")
    for name, variable in variables.items():
        if variable.get("type") == "query":
            report.check((variable.get("datasource") or {}).get("uid") == "${datasource}",
                         f"{where}: variable {name!r} does not read the data source ${{datasource}} ({variable.get('datasource')})")
    ids: list = []
    for panel in dashboard_panels(dashboard):
        ids.append(panel.get("id"))
        title = panel.get("title")
        if panel.get("type") != "row":
            uses = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets") or [] if t.get("datasource")]
            report.check(all((d or {}).get("uid") == "${datasource}" for d in uses),
                         f"{where}: panel {title!r} does not read the data source ${{datasource}} ({uses})")
            report.check(any(t.get("expr") for t in panel.get("targets") or []), f"{where}: panel {title!r} has no query")
    report.check(len(ids) == len(set(ids)) and None not in ids, f"{where}: panel ids are missing or repeated")
    defined = swift_metrics(root, report)
    series = exposed_series(defined)
    unknown: dict[str, list[str]] = {}
    for place, expr in dashboard_queries(dashboard):
        names, problems = promql_metric_names(expr)
        for problem in problems:
            report.check(False, f"{where}: {place} {problem}")
        report.check(bool(names) or bool(problems), f"{where}: {place} reads no metric: {expr!r}")
        for name in sorted(names - set(series)):
            unknown.setdefault(name, []).append(place)
    for name, places in sorted(unknown.items()):
        hint = ""
        if defined.get(name, ("",))[0] == "histogram":
            hint = f" ({name} is a histogram: query {name}_bucket, _sum or _count)"
        elif name + "_total" in series:
            hint = f" (did you mean {name}_total? swift-prometheus writes counter names as given)"
        elif name.endswith("_total") and name[:-len("_total")] in series:
            hint = f" (did you mean {name[:-len('_total')]}? swift-prometheus adds no _total)"
        elif name in defined:
            hint = f" ({name} is a {defined[name][0]})"
        shown = sorted(set(places))
        report.check(False, f"{where}: metric {name} is defined nowhere in Services/ or Shared/{hint}; used by "
                            + ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else ""))


def load_yaml(path: Path, root: Path, report: Report) -> dict:
    """A YAML file's mapping ({} when it does not parse or is not one, the first reported)."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        report.check(False, f"{path.relative_to(root)} does not parse: {error}")
        return {}
    return document if isinstance(document, dict) else {}


def scrape_jobs(path: Path, root: Path, report: Report) -> dict[str, dict]:
    return {str(job.get("job_name")): job for job in load_yaml(path, root, report).get("scrape_configs") or []}


def static_targets(job: dict) -> list[tuple[str, dict]]:
    return [(str(target), group.get("labels") or {}) for group in job.get("static_configs") or [] for target in group.get("targets") or []]


def relabelled_service(job: dict, labels: dict) -> str | None:
    """The `service` label a job gives its targets (a static label or a fixed relabelling)."""
    for rule in job.get("relabel_configs") or []:
        if rule.get("target_label") == "service" and not rule.get("source_labels") and rule.get("action", "replace") == "replace":
            return rule.get("replacement")
    return labels.get("service")


def service_jobs(jobs: dict[str, dict], where: str, report: Report):
    """(service, its scrape job) for every Herald process, reporting those without one."""
    for service in SERVICES:
        job = jobs.get(service)
        if report.check(job is not None, f"{where}: no job {service}"):
            yield service, job


def check_prometheus_configs(root: Path, metrics_ports: dict[str, int], report: Report) -> None:
    folder = root / "deploy/prometheus"
    # The local stack (scripts/run-stack): every process on 127.0.0.1 at its default metrics port.
    where = "deploy/prometheus/prometheus.yml"
    jobs = scrape_jobs(folder / "prometheus.yml", root, report)
    for service, job in service_jobs(jobs, where, report):
        report.check(job.get("metrics_path", "/metrics") == "/metrics", f"{where}: job {service} scrapes {job.get('metrics_path')}")
        targets = static_targets(job)
        expected = metrics_ports[service]
        report.check([t for t, _ in targets] in ([f"127.0.0.1:{expected}"], [f"localhost:{expected}"]),
                     f"{where}: job {service} scrapes {[t for t, _ in targets]}, but {service}'s default metrics port is {expected} "
                     f"(ServiceConfiguration.defaultMetricsPort)")
        report.check(all(relabelled_service(job, labels) == service for _, labels in targets) and bool(targets),
                     f"{where}: job {service} does not label its target service={service}")
    known = {f"{host}:{port}" for port in metrics_ports.values() for host in ("127.0.0.1", "localhost")}
    for name, job in jobs.items():
        for target, _ in static_targets(job):
            report.check(target in known, f"{where}: job {name} scrapes {target}, no process's default metrics address")
    # Compose (the monitoring profile): every service's containers on 9100.
    where = "deploy/prometheus/compose.yml"
    jobs = scrape_jobs(folder / "compose.yml", root, report)
    for service, job in service_jobs(jobs, where, report):
        dns = [(c.get("names"), c.get("port")) for c in job.get("dns_sd_configs") or []]
        static = [t for t, _ in static_targets(job)]
        report.check(dns == [([service], METRICS_PORT)] or (not dns and static == [f"{service}:{METRICS_PORT}"]),
                     f"{where}: job {service} does not scrape the compose service {service} on {METRICS_PORT} (dns {dns}, static {static})")
        report.check(relabelled_service(job, (static_targets(job) or [("", {})])[0][1]) == service,
                     f"{where}: job {service} does not label its targets service={service}")
    # Kubernetes: pod discovery by the prometheus.io annotations the Deployments carry.
    where = "deploy/prometheus/kubernetes.yml"
    jobs = scrape_jobs(folder / "kubernetes.yml", root, report)
    pods = [j for j in jobs.values() if any(c.get("role") == "pod" for c in j.get("kubernetes_sd_configs") or [])]
    if report.check(bool(pods), f"{where}: no job discovers pods (kubernetes_sd_configs role pod)"):
        rules = [r for j in pods for r in j.get("relabel_configs") or []]
        annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"

        def has(test) -> bool:
            return any(test(r, r.get("source_labels") or []) for r in rules)

        report.check(has(lambda r, s: s == [annotation + "scrape"] and r.get("action") == "keep" and str(r.get("regex")) == "true"),
                     f"{where}: does not keep only pods annotated prometheus.io/scrape: \"true\"")
        report.check(has(lambda r, s: s == [annotation + "path"] and r.get("target_label") == "__metrics_path__"),
                     f"{where}: does not take the path from prometheus.io/path")
        report.check(has(lambda r, s: (r.get("action") == "keepequal" and annotation + "port" in (s + [r.get("target_label")]))
                         or (annotation + "port" in s and r.get("target_label") == "__address__")),
                     f"{where}: does not take the port from prometheus.io/port")
        report.check(has(lambda r, s: s == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"] and r.get("target_label") == "service"),
                     f"{where}: does not set the label service from the pod label app.kubernetes.io/name")


# MARK: - Dockerfile and docs


def check_dockerfile(root: Path, venv_bin: Path, ports: dict[str, int], report: Report) -> None:
    path = root / "deploy/Dockerfile"
    lint = subprocess.run([str(venv_bin / "hadolint"), "--no-color", str(path)], capture_output=True, text=True)
    report.check(lint.returncode == 0, f"deploy/Dockerfile: hadolint: {(lint.stdout + lint.stderr).strip()}")
    text = path.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    report.check(bool(users) and re.match(r"^[1-9]\d*(:\d+)?$", users[-1]) is not None,
                 f"deploy/Dockerfile: the last USER is {users[-1] if users else 'missing'}, not a non-root numeric id")
    report.check(len(re.findall(r"^FROM\s", text, re.M)) >= 2, "deploy/Dockerfile: not a multi-stage build")
    loops = re.findall(r"for product in ([^;]+); do", text)
    for service in SERVICES + ["crm-sandbox"]:
        report.check(all(service in loop.split() for loop in loops) and bool(loops),
                     f"deploy/Dockerfile: does not build and copy {service}")
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}
    expected = set(ports.values()) | {METRICS_PORT}
    report.check(exposed == expected, f"deploy/Dockerfile: EXPOSE {sorted(exposed)}, the services use {sorted(expected)} (with metrics)")
    report.check(re.search(rf"^ENV\s.*\bHERALD_METRICS_PORT={METRICS_PORT}\b", text, re.M) is not None,
                 f"deploy/Dockerfile: the image does not set HERALD_METRICS_PORT={METRICS_PORT} (the port it exposes for /metrics)")


def check_docs(root: Path, secrets: list[str], report: Report) -> None:
    readme = (root / "deploy/README.md").read_text()
    for secret in secrets:
        if secret.endswith("-ca"):
            continue  # made by the operator
        report.check(secret in readme, f"deploy/README.md does not say how to create Secret {secret}")


def validate(root: Path, venv_bin: Path, kubernetes: bool = True) -> list[str]:
    report = Report()
    calls, ports = service_catalog(root)
    check_compose(root, venv_bin, calls, report)
    check_prometheus_configs(root, default_metrics_ports(root, ports), report)
    check_dashboard(root, report)
    if kubernetes:
        secrets = check_kubernetes(root, calls, ports, report)
        check_docs(root, secrets, report)
    check_dockerfile(root, venv_bin, ports, report)
    return report.errors


# MARK: - Self-test

# (file, text to replace, replacement, a piece of the error it must cause)
BREAKAGES = [
    ("docker-compose.yml", '      test: ["CMD", "sync", "probe"]\n', "", "service sync has no healthcheck"),
    ("docker-compose.yml", "    image: postgres:15-bookworm\n", "    image: [postgres]\n", "fails the Compose specification"),
    ("docker-compose.yml", "      campaign:\n        condition: service_healthy\n\n  verification:",
     "      campaign:\n        condition: service_started\n\n  verification:", "sync: does not depend on campaign"),
    ("deploy/k8s/base/delivery.yaml", "maxReplicas: 10", "maxReplicas: ten", "HorizontalPodAutoscaler delivery"),
    ("deploy/k8s/base/delivery.yaml", "  template:\n", "  templat:\n", "Deployment delivery"),
    ("deploy/k8s/base/sync.yaml", "readOnlyRootFilesystem: true\n            capabilities:\n              drop: [\"ALL\"]\n          volumeMounts:",
     "readOnlyRootFilesystem: false\n            capabilities:\n              drop: [\"ALL\"]\n          volumeMounts:",
     "container sync: root file system is not read-only"),
    ("deploy/k8s/base/campaign.yaml", "              cpu: 100m\n              memory: 192Mi\n            limits:\n              cpu: \"1\"\n              memory: 512Mi",
     "              cpu: 100m\n              memory: 192Mi\n            limits:\n              cpu: \"1\"", "container campaign: no memory limit"),
    ("deploy/k8s/base/ratelimit.yaml", "              service: liveness\n", "", "livenessProbe does not ask for service 'liveness'"),
    ("deploy/k8s/base/delivery.yaml", "              app.kubernetes.io/name: campaign\n",
     "              app.kubernetes.io/name: campaign\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: sync\n",
     "NetworkPolicy lets ['campaign', 'gateway', 'sync', 'verification'] call delivery"),
    ("Shared/HeraldServerKit/ServiceConfiguration.swift", '"sync": ["campaign"],', '"sync": ["campaign", "ratelimit"],',
     "the code's callers are ['delivery', 'gateway', 'ratelimit', 'sync', 'verification']"),
    ("deploy/k8s/base/postgres-cluster.yaml", "  instances: 3\n", "  instances: 1\n", "has 1 instances"),
    ("deploy/k8s/base/postgres-cluster.yaml", "        passwordSecret:\n          name: herald-db-gateway\n", "",
     "role herald_gateway needs login and passwordSecret"),
    ("deploy/k8s/overlays/example/kustomization.yaml", "  - ../../base\n", "  - ../../bass\n", "kustomize"),
    ("deploy/Dockerfile", "USER 10001:10001", "USER root", "not a non-root numeric id"),
    ("deploy/Dockerfile", "RUN apt-get update \\", "RUN cd /tmp && apt-get update \\", "hadolint"),
    ("deploy/README.md", "herald-db-campaign", "the campaign secret", "Secret herald-db-campaign"),
    ("deploy/k8s/base/sync.yaml", "            grpc:\n              port: 7104\n            periodSeconds: 5",
     "            grpc:\n              port: 7104\n              service: liveness\n            periodSeconds: 5",
     "readinessProbe asks for service 'liveness'"),
    ("deploy/k8s/base/delivery.yaml", "                  name: herald-db-delivery\n", "                  name: herald-db-campaign\n",
     "HERALD_DATABASE_PASSWORD does not come from Secret herald-db-delivery"),
    ("deploy/k8s/base/postgres-cluster.yaml", "podAntiAffinityType:", "podAntiAffinityTyp:", "unknown field spec.affinity.podAntiAffinityTyp"),
    ("deploy/k8s/base/network-policies.yaml", "kubernetes.io/metadata.name: cnpg-system", "kubernetes.io/metadata.name: cnpg",
     "CloudNativePG operator (cnpg-system)"),
    ("deploy/k8s/base/campaign.yaml", "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: sync\n",
     "        - namespaceSelector: {}\n          podSelector:\n            matchLabels:\n              app.kubernetes.io/name: sync\n",
     "NetworkPolicy lets"),
    # Metrics: the Deployments, the NetworkPolicies, compose, the Prometheus configurations, the dashboard.
    ("deploy/k8s/base/sync.yaml", '            - name: HERALD_METRICS_PORT\n              value: "9100"\n', "",
     "Deployment sync: HERALD_METRICS_PORT is not set"),
    ("deploy/k8s/base/delivery.yaml", '        prometheus.io/scrape: "true"\n', "", "Deployment delivery: pod annotation prometheus.io/scrape"),
    ("deploy/k8s/base/gateway.yaml", '        prometheus.io/port: "9100"\n', '        prometheus.io/port: "9080"\n',
     "Deployment gateway: pod annotation prometheus.io/port is '9080'"),
    ("deploy/k8s/base/ratelimit.yaml", "            - name: metrics\n              containerPort: 9100\n",
     "            - name: metrics\n              containerPort: 8103\n", "Deployment ratelimit: no container port named metrics on 9100"),
    ("deploy/k8s/base/network-policies.yaml", "              kubernetes.io/metadata.name: monitoring\n",
     "              kubernetes.io/metadata.name: observability\n",
     "no NetworkPolicy lets namespace monitoring reach verification's metrics port 9100"),
    ("deploy/k8s/base/network-policies.yaml", "      ports:\n        - port: 9100\n          protocol: TCP\n", "",
     "it may reach only 9100"),
    ("deploy/k8s/base/network-policies.yaml",
     "    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: monitoring\n",
     "    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: monitoring\n"
     "        - podSelector: {}\n", "reach campaign's metrics port 9100; only namespace monitoring may"),
    ("deploy/k8s/base/gateway.yaml", "    - ports:\n        - port: 8080\n", "    - ports:\n        - port: 8080\n        - port: 9100\n",
     "lets ['anyone'] reach gateway's metrics port 9100"),
    ("docker-compose.yml", '  HERALD_METRICS_PORT: "9100"\n', "", "campaign: HERALD_METRICS_PORT is None"),
    ("docker-compose.yml", "    image: grafana/grafana:11.6.0\n", "    image: grafana/grafana:latest\n", "grafana's image 'grafana/grafana:latest' is not pinned"),
    ("docker-compose.yml", "    profiles: [monitoring]\n", "", "prometheus is not in profile monitoring"),
    ("docker-compose.yml", "      - --config.file=/etc/prometheus/compose.yml\n", "      - --config.file=/etc/prometheus/prometheus.yml\n",
     "prometheus does not load deploy/prometheus/compose.yml"),
    ("deploy/prometheus/compose.yml", "      - names: [delivery]\n        type: A\n        port: 9100\n",
     "      - names: [delivery]\n        type: A\n        port: 8102\n", "job delivery does not scrape the compose service delivery on 9100"),
    ("deploy/prometheus/prometheus.yml", '      - targets: ["127.0.0.1:8102"]\n', '      - targets: ["127.0.0.1:7102"]\n',
     "job delivery scrapes ['127.0.0.1:7102'], but delivery's default metrics port is 8102"),
    ("Shared/HeraldServerKit/ServiceConfiguration.swift", "servicePort == 0 || servicePort + 1000 > 65535 ? 0 : servicePort + 1000",
     "servicePort == 0 || servicePort + 2000 > 65535 ? 0 : servicePort + 2000", "but campaign's default metrics port is 9101"),
    ("deploy/prometheus/kubernetes.yml", "        target_label: __metrics_path__\n", "        target_label: __path__\n",
     "does not take the path from prometheus.io/path"),
    ("deploy/grafana/provisioning/dashboards/herald.yml", "      path: /etc/herald/dashboards\n", "      path: /var/lib/grafana/dashboards\n",
     "grafana does not mount deploy/grafana/herald-dashboard.json into a folder a dashboard provider"),
    ("deploy/grafana/herald-dashboard.json", '  "panels": [', '  "panels": [,', "herald-dashboard.json does not parse"),
    ("deploy/grafana/herald-dashboard.json", "rate(hb_requests[", "rate(hb_requests_total[",
     "metric hb_requests_total is defined nowhere in Services/ or Shared/ (did you mean hb_requests?"),
    ("deploy/grafana/herald-dashboard.json", "herald_grpc_server_duration_seconds_bucket", "herald_grpc_server_duration_seconds",
     "herald_grpc_server_duration_seconds is a histogram"),
    ("deploy/grafana/herald-dashboard.json", '"uid": "${datasource}"', '"uid": "P1809F7CD0C75ACF3"',
     "variable 'service' does not read the data source"),
    ("deploy/grafana/herald-dashboard.json", '"uid": "${datasource}"\n          },\n          "expr": "sum by (status) (increase(herald_verification_repairs_total',
     '"uid": "prometheus"\n          },\n          "expr": "sum by (status) (increase(herald_verification_repairs_total',
     "panel 'Repairs by status' does not read the data source"),
    # The metric names are read from the Swift sources when the check runs.
    ("Shared/HeraldServerKit/Interceptors.swift", 'Counter(label: "herald_grpc_server_requests_total"',
     'Counter(label: "herald_grpc_requests_total"', "metric herald_grpc_server_requests_total is defined nowhere"),
    ("Services/Campaign/Library/CampaignDefinition.swift", '"herald_campaign_outbox_pending_chunks"', '"herald_campaign_outbox_chunks"',
     "metric herald_campaign_outbox_pending_chunks is defined nowhere"),
    ("Shared/HeraldServerKit/MetricsEndpoint.swift", 'metricName: "herald_metrics_collector_errors_total"',
     'metricName: "herald_metrics_collector_failures_total"', "metric herald_metrics_collector_errors_total is defined nowhere"),
]


def needs_kubernetes(file: str, expected: str) -> bool:
    return file.startswith("deploy/k8s") or file == "deploy/README.md" \
        or (file == "Shared/HeraldServerKit/ServiceConfiguration.swift" and "callers" in expected)


def self_test(root: Path, venv_bin: Path, kubernetes: bool) -> int:
    breakages = [b for b in BREAKAGES if kubernetes or not needs_kubernetes(b[0], b[3])]
    # A breakage counts as caught when it causes an error the unbroken files do not have, so the
    # self-test also runs while the files fail (e.g. the dashboard reads metrics not written yet).
    baseline = validate(root, venv_bin, kubernetes)
    if baseline:
        print("validate-deploy --self-test: the files themselves fail (breakages are judged by the errors they add):\n  "
              + "\n  ".join(baseline))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="herald-deploy-check-") as folder:
        # One copy of what the checks read; each breakage is written into it and then undone.
        copy_root = Path(folder) / "repo"
        # (Package.resolved only once a build has resolved the packages; else Package.swift says.)
        for part in ["deploy", "docker-compose.yml", "Package.swift", "Package.resolved", "Services", "Shared"]:
            source, target = root / part, copy_root / part
            if not source.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
        for file, old, new, expected in breakages:
            broken = copy_root / file
            text = broken.read_text()
            if old not in text:
                print(f"  self-test broken: {file} no longer contains {old!r}")
                failures += 1
                continue
            broken.write_text(text.replace(old, new, 1))
            try:
                errors = [error for error in validate(copy_root, venv_bin, kubernetes) if error not in baseline]
            finally:
                broken.write_text(text)
            caught = any(expected in error for error in errors)
            print(f"  {'caught' if caught else 'MISSED'}: {file}: {expected}")
            if not caught:
                print("    reported instead:\n      " + "\n      ".join(errors or ["nothing"]))
                failures += 1
    print(f"validate-deploy --self-test: {len(breakages) - failures} of {len(breakages)} breakages caught"
          + (f"; but the files themselves fail ({len(baseline)} problem(s), above)" if baseline else ""))
    return 1 if failures or baseline else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--self-test", action="store_true", help="check that breakages of the files are caught")
    arguments = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    venv_bin = Path(sys.executable).parent
    # The manifests are rendered with `kubectl kustomize` (kubectl 1.24 or later). Debian's
    # kubernetes-client is too old for that, so kubectl cannot be installed here: without it the
    # Kubernetes checks are skipped with a warning, except in CI, where that is a failure.
    kubernetes = shutil.which("kubectl") is not None
    if not kubernetes:
        if os.environ.get("CI"):
            print("validate-deploy: kubectl (1.24+, for `kubectl kustomize`) is not on PATH; CI needs it")
            return 1
        print("validate-deploy: WARNING: kubectl not found; the Kubernetes manifests are NOT checked")
    if arguments.self_test:
        return self_test(root, venv_bin, kubernetes)
    errors = validate(root, venv_bin, kubernetes)
    for error in errors:
        print(f"  {error}")
    checked = ("compose, Kubernetes manifests" if kubernetes else "compose") + ", Prometheus configurations, dashboard and Dockerfile"
    print(f"validate-deploy: {'FAILED, ' + str(len(errors)) + ' problem(s)' if errors else checked + ' pass'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
