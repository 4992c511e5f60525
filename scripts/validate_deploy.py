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
  default ports exposed.
- deploy/README.md names every Secret the manifests use.

`--self-test` breaks the files in a temporary copy, one way at a time, and checks that each
breakage is reported: the checks can fail.
"""

from __future__ import annotations

import argparse
import copy
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
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


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
    declared = [p.get("containerPort") for p in main.get("ports") or []]
    report.check(declared == [port], f"{what}: container ports {declared}, expected [{port}]")
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


def check_network_policies(objects: list[dict], calls: dict[str, list[str]], ports: dict[str, int], where: str,
                           report: Report) -> None:
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    report.check(any(p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
                     for p in policies), f"{where}: no default-deny ingress NetworkPolicy")
    for service in BACK_ENDS:
        labels = {"app.kubernetes.io/name": service}
        mine = [p for p in policies if p["spec"].get("podSelector") and selects(p["spec"]["podSelector"], labels)]
        allowed: set[str] = set()
        policy_ports: set[int] = set()
        for policy in mine:
            for rule in policy["spec"].get("ingress") or []:
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
    report.check(exposed == set(ports.values()), f"deploy/Dockerfile: EXPOSE {sorted(exposed)}, the services use {sorted(ports.values())}")


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
]


def needs_kubernetes(file: str) -> bool:
    return file.startswith("deploy/k8s") or file in ("deploy/README.md", "Shared/HeraldServerKit/ServiceConfiguration.swift")


def self_test(root: Path, venv_bin: Path, kubernetes: bool) -> int:
    breakages = [b for b in BREAKAGES if kubernetes or not needs_kubernetes(b[0])]
    baseline = validate(root, venv_bin, kubernetes)
    if baseline:
        print("validate-deploy --self-test: the files themselves fail:\n  " + "\n  ".join(baseline))
        return 1
    failures = 0
    with tempfile.TemporaryDirectory(prefix="herald-deploy-check-") as folder:
        for file, old, new, expected in breakages:
            copy_root = Path(folder) / "repo"
            shutil.rmtree(copy_root, ignore_errors=True)
            for part in ["deploy", "docker-compose.yml", "Shared/HeraldServerKit/ServiceConfiguration.swift"]:
                source, target = root / part, copy_root / part
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
            broken = copy_root / file
            text = broken.read_text()
            if old not in text:
                print(f"  self-test broken: {file} no longer contains {old!r}")
                failures += 1
                continue
            broken.write_text(text.replace(old, new, 1))
            errors = validate(copy_root, venv_bin, kubernetes)
            caught = any(expected in error for error in errors)
            print(f"  {'caught' if caught else 'MISSED'}: {file}: {expected}")
            if not caught:
                print("    reported instead:\n      " + "\n      ".join(errors or ["nothing"]))
                failures += 1
    print(f"validate-deploy --self-test: {len(breakages) - failures} of {len(breakages)} breakages caught")
    return 1 if failures else 0


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
    checked = "compose, Kubernetes manifests and Dockerfile" if kubernetes else "compose and Dockerfile"
    print(f"validate-deploy: {'FAILED, ' + str(len(errors)) + ' problem(s)' if errors else checked + ' pass'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
