"""deploy/k8s: every object validates against Kubernetes 1.30's schemas (offline),
and the pieces fit together: probes, Services, Secrets, policies, overlays.

Istio's, Linkerd's and the Prometheus Operator's custom resources are not in
kubernetes-validate's schemas; they are checked structurally here (apiVersion,
kind, metadata, spec, and the fields MRM relies on).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from mrm.core.auth import bootstrap
from mrm.core.auth.config import AuthConfig
from mrm.core.auth.principal import Role
from mrm.core.settings import Settings
from tests.support.kustomize import KustomizeError, Obj, build, load_yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
SECRETS = {"mrm-auth", "mrm-database", "mrm-ledger-key", "mrm-subject-key", "mrm-monitor-webhooks"}
SERVICES = {"ledger": 50052, "registry": 50051, "explain": 50053, "proxy": 8001, "monitor": 50054}
# The proxy's Open Inference Protocol over HTTP/REST, beside its gRPC (MRM_PROXY_HTTP_ADDR).
PROXY_REST = int(Settings.model_fields["proxy_http_addr"].default.rpartition(":")[2])
# Istio's protocol selection from a Service port's name (<protocol>[-<suffix>]).
ISTIO_PORT_NAME = re.compile(r"^(grpc|http)(-.*)?$")
LINKERD_PROTOCOL = {"grpc": "gRPC", "http": "HTTP/1"}
CUSTOM_GROUPS = (
    "security.istio.io/",
    "networking.istio.io/",
    "policy.linkerd.io/",
    "monitoring.coreos.com/",
)
KUSTOMIZATIONS = ["base", "overlays/istio", "overlays/linkerd", "overlays/prometheus-operator"]


def render(name: str) -> list[Obj]:
    return build(K8S / name)


def of_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(obj: Obj) -> Any:
    return obj["spec"]["template"]["spec"]


def test_every_yaml_file_parses_and_is_in_a_kustomization() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 14
    listed: set[Path] = set()
    for kfile in K8S.rglob("kustomization.yaml"):
        (spec,) = load_yaml(kfile)
        for entry in [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []))]:
            listed.add((kfile.parent / entry).resolve())
    for f in files:
        docs = load_yaml(f)
        assert docs, f
        if f.name != "kustomization.yaml":
            assert f.resolve() in listed, f"{f} is not used by any kustomization"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_objects_validate_against_the_kubernetes_schemas(name: str) -> None:
    objects = render(name)
    custom = [o for o in objects if o["apiVersion"].startswith(CUSTOM_GROUPS)]
    builtin = [o for o in objects if o not in custom]
    assert len(builtin) >= 20
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    for obj in custom:
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, obj
        assert obj["metadata"]["namespace"] == "mrm"
        assert obj["spec"]


def test_the_schema_validation_catches_a_bad_object() -> None:
    deployment = of_kind(render("base"), "Deployment")["mrm-ledger"]
    pod_spec(deployment)["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_each_service_runs_hardened_with_grpc_probes_and_resources() -> None:
    objects = render("base")
    deployments = of_kind(objects, "Deployment")
    services = of_kind(objects, "Service")
    assert set(deployments) == {f"mrm-{s}" for s in SERVICES}
    for name, port in SERVICES.items():
        spec = pod_spec(deployments[f"mrm-{name}"])
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        assert container["args"] == ["serve", name]
        assert container["image"] == "registry.example.com/mrm:0.1.0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (name, probe)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == port
        # The service listens on the image's 0.0.0.0 default and reaches the others by Service.
        env = {e["name"]: e for e in container["env"]}
        assert f"MRM_{name.upper()}_ADDR" not in env
        for other, other_port in SERVICES.items():
            if f"MRM_{other.upper()}_ADDR" in env:
                assert env[f"MRM_{other.upper()}_ADDR"]["value"] == f"mrm-{other}:{other_port}"
                assert f"mrm-{other}" in services
        svc = services[f"mrm-{name}"]
        assert (
            svc["spec"]["selector"] == deployments[f"mrm-{name}"]["spec"]["selector"]["matchLabels"]
        )
        for sp in svc["spec"]["ports"]:
            assert sp["targetPort"] in ports
            assert sp["appProtocol"] == ("grpc" if sp["targetPort"] == "grpc" else "http")
    assert services["mrm-explain"]["spec"]["ports"][1]["port"] == 8000


def test_secrets_are_referenced_never_embedded() -> None:
    objects = render("base")
    assert not of_kind(objects, "Secret"), "no Secret manifest belongs in the repository"
    referenced: set[str] = set()
    pods = [*of_kind(objects, "Deployment").values(), *of_kind(objects, "Job").values()]
    for obj in pods:
        spec = pod_spec(obj)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
                assert volume["secret"]["defaultMode"] == 0o400
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                name = env["name"]
                assert "value" not in env or "PASSWORD" not in name, name
    assert referenced == SECRETS
    ledger = pod_spec(of_kind(objects, "Deployment")["mrm-ledger"])["containers"][0]
    env = {e["name"]: e for e in ledger["env"]}
    assert env["MRM_LEDGER_KEY_FILE"]["value"].startswith("/etc/mrm/ledger/")
    files = [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and "secrets" not in p.parts]
    text = "\n".join(p.read_text() for p in files)
    assert "PRIVATE+KEY+" not in text
    assert "BEGIN PRIVATE KEY" not in text
    readme = (ROOT / "deploy" / "README.md").read_text()
    for secret in SECRETS:
        assert f"kubectl -n mrm create secret generic {secret}" in readme


def test_every_server_checks_credentials_and_presents_its_own(tmp_path: Path) -> None:
    objects = render("base")
    settings = {f"MRM_{name.upper()}" for name in Settings.model_fields}
    config = of_kind(objects, "ConfigMap")
    assert config["mrm-settings"]["data"]["MRM_AUTH_CONFIG_FILE"].startswith(
        "/etc/mrm/auth-config/"
    )
    # the shipped auth.toml is one the servers load (the real loader, not a schema)
    (tmp_path / "auth.toml").write_text(config["mrm-auth-config"]["data"]["auth.toml"])
    loaded = AuthConfig.load(tmp_path / "auth.toml")
    assert loaded.oidc[0].issuer == "https://token.actions.githubusercontent.com"
    own = {"ledger": set(), "registry": {"registry.token"}, "proxy": {"proxy.token"},
           "explain": {"explain.token", "session.key", "dashboard.token"},
           "monitor": {"monitor.token"}}  # fmt: skip
    for service, files in own.items():
        spec = pod_spec(of_kind(objects, "Deployment")[f"mrm-{service}"])
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        assert set(env) <= settings | {"OTEL_SERVICE_NAME"}, set(env) - settings
        assert env["MRM_AUTH_TOKENS_FILE"] == "/etc/mrm/auth/tokens.json"
        for name, path in env.items():
            if name.endswith(("_TOKEN_FILE", "SESSION_KEY_FILE")):
                assert path.removeprefix("/etc/mrm/auth/") in files, (service, name)
        assert "MRM_INSECURE" not in env
        (auth,) = [
            v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "mrm-auth"
        ]
        # a pod holds the tokens file and its own credentials, nobody else's
        assert {i["key"] for i in auth["secret"]["items"]} == {"tokens.json", *files}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts[auth["name"]]["mountPath"] == "/etc/mrm/auth"
        assert mounts[auth["name"]]["readOnly"] is True
        assert "subPath" not in mounts[auth["name"]]  # updates reach the pod


def test_migration_job_pdb_hpa_and_configmap() -> None:
    objects = render("base")
    (job,) = of_kind(objects, "Job").values()
    container = pod_spec(job)["containers"][0]
    assert container["args"] == ["db", "upgrade", "--app-role", "mrm_app"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "owner-url"
    deployments = of_kind(objects, "Deployment")
    for pdb in of_kind(objects, "PodDisruptionBudget").values():
        target = pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        assert deployments[target]["spec"]["replicas"] > pdb["spec"]["minAvailable"]
    hpa = of_kind(objects, "HorizontalPodAutoscaler")["mrm-proxy"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    config = of_kind(objects, "ConfigMap")["mrm-settings"]
    assert all(k.startswith(("MRM_", "OTEL_")) for k in config["data"])
    assert not any(s in k for k in config["data"] for s in ("KEY", "PASSWORD", "DATABASE_URL"))


def test_network_policies_deny_by_default_and_select_real_pods() -> None:
    objects = render("base")
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    names = {o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "Job")}
    for policy in policies.values():
        selector = policy["spec"]["podSelector"]
        selected = set(selector.get("matchLabels", {}).values())
        for expr in selector.get("matchExpressions", []):
            selected |= set(expr["values"])
        assert selected <= names, policy["metadata"]["name"]
    ledger_in = policies["mrm-ledger"]["spec"]["ingress"][0]
    assert ledger_in["ports"] == [{"protocol": "TCP", "port": 50052}]


def ingress_ports(policy: Obj) -> dict[int, list[Any]]:
    """Each port a NetworkPolicy admits, with the peers (`from`) admitted on it."""
    admitted: dict[int, list[Any]] = {}
    for rule in policy["spec"].get("ingress", []):
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            admitted.setdefault(port["port"], []).extend(rule["from"])
    return admitted


def test_every_service_port_is_a_container_port_the_network_policy_admits() -> None:
    objects = render("base")
    deployments = of_kind(objects, "Deployment")
    policies = of_kind(objects, "NetworkPolicy")
    for service in of_kind(objects, "Service").values():
        name = service["metadata"]["name"]
        (container,) = pod_spec(deployments[name])["containers"]
        numbers = {p["name"]: p["containerPort"] for p in container["ports"]}
        admitted = ingress_ports(policies[name])
        for port in service["spec"]["ports"]:
            assert port["port"] == numbers[port["targetPort"]], (name, port["name"])
            assert port["port"] in admitted, (name, port["port"])


def test_the_proxy_serves_oip_rest_beside_grpc_on_every_interface() -> None:
    objects = render("base")
    proxy = of_kind(objects, "Deployment")["mrm-proxy"]
    (container,) = pod_spec(proxy)["containers"]
    ports = {p["name"]: p for p in container["ports"]}
    assert ports["http"] == {"name": "http", "containerPort": PROXY_REST, "protocol": "TCP"}
    assert PROXY_REST == 8080
    # loopback by default; the pod listens on every interface at the declared port
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MRM_PROXY_HTTP_ADDR"] == f"0.0.0.0:{PROXY_REST}"
    # the gRPC probes stay (the REST port shares the process and its readiness)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == SERVICES["proxy"], probe
    service = of_kind(objects, "Service")["mrm-proxy"]
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["grpc"] == {
        "name": "grpc",
        "port": SERVICES["proxy"],
        "targetPort": "grpc",
        "appProtocol": "grpc",
    }
    assert by_name["http"] == {
        "name": "http",
        "port": PROXY_REST,
        "targetPort": "http",
        "appProtocol": "http",
    }
    # inference callers reach REST exactly as they reach gRPC; /metrics stays Prometheus's
    admitted = ingress_ports(of_kind(objects, "NetworkPolicy")["mrm-proxy"])
    assert admitted[PROXY_REST] == admitted[SERVICES["proxy"]] == [{"namespaceSelector": {}}]
    assert admitted[ports["metrics"]["containerPort"]] != admitted[PROXY_REST]
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "MRM_PROXY_HTTP_ADDR" in readme
    assert f"HTTP/REST {PROXY_REST}" in readme  # the port list


def test_istio_overlay_injects_sidecars_with_strict_mtls_and_grpc_balancing() -> None:
    objects = render("overlays/istio")
    namespace = of_kind(objects, "Namespace")["mrm"]
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (peer,) = of_kind(objects, "PeerAuthentication").values()
    assert peer["spec"]["mtls"]["mode"] == "STRICT"
    rules = of_kind(objects, "DestinationRule")
    services = of_kind(objects, "Service")
    assert {r["spec"]["host"].split(".")[0] for r in rules.values()} == set(services)
    for rule in rules.values():
        assert rule["spec"]["host"].endswith(".mrm.svc.cluster.local")
        assert rule["spec"]["trafficPolicy"]["loadBalancer"]["simple"] == "LEAST_REQUEST"
        assert rule["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
    # Istio picks each port's protocol from appProtocol, else from the name: both agree
    for service in services.values():
        for port in service["spec"]["ports"]:
            match = ISTIO_PORT_NAME.match(port["name"])
            assert match, (service["metadata"]["name"], port["name"])
            assert port["appProtocol"] == match[1], (service["metadata"]["name"], port["name"])
    proxy_ports = {p["port"]: p for p in services["mrm-proxy"]["spec"]["ports"]}
    assert proxy_ports[SERVICES["proxy"]]["appProtocol"] == "grpc"
    assert proxy_ports[PROXY_REST]["appProtocol"] == "http"


def test_linkerd_overlay_injects_proxies_and_admits_only_mtls() -> None:
    objects = render("overlays/linkerd")
    annotations = of_kind(objects, "Namespace")["mrm"]["metadata"]["annotations"]
    assert annotations["linkerd.io/inject"] == "enabled"
    assert annotations["config.linkerd.io/default-inbound-policy"] == "all-authenticated"
    deployments = of_kind(objects, "Deployment")
    servers = of_kind(objects, "Server")
    assert len(servers) == 7
    for server in servers.values():
        target = deployments[server["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]]
        ports = {p["name"] for p in pod_spec(target)["containers"][0]["ports"]}
        assert server["spec"]["port"] in ports
    # every port a Service exposes has its Server, speaking the Service's protocol
    declared = {
        (s["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], s["spec"]["port"]): s
        for s in servers.values()
    }
    for service in of_kind(objects, "Service").values():
        pod = service["spec"]["selector"]["app.kubernetes.io/name"]
        for port in service["spec"]["ports"]:
            assert (pod, port["targetPort"]) in declared, (pod, port["name"])
            protocol = declared[(pod, port["targetPort"])]["spec"]["proxyProtocol"]
            assert protocol == LINKERD_PROTOCOL[port["appProtocol"]], (pod, port["name"])
    rest = declared[("mrm-proxy", "http")]
    assert rest["spec"]["proxyProtocol"] == "HTTP/1"
    auth = of_kind(objects, "MeshTLSAuthentication")
    policies = of_kind(objects, "AuthorizationPolicy")
    assert {p["spec"]["targetRef"]["name"] for p in policies.values()} == set(servers)
    for policy in policies.values():
        (ref,) = policy["spec"]["requiredAuthenticationRefs"]
        assert ref["kind"] == "MeshTLSAuthentication"
        assert ref["name"] in auth


def test_the_kustomize_subset_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match=r"resource missing.yaml does not exist"):
        build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("namePrefix: x-\n")
    with pytest.raises(KustomizeError, match="unsupported field"):
        build(tmp_path)
    (tmp_path / "ns.yaml").write_text("kind: Namespace\nmetadata: {name: other}\n")
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{K8S / 'base'}]\npatches: [{{path: ns.yaml}}]\n"
    )
    with pytest.raises(KustomizeError, match="which is not a resource"):
        build(tmp_path)


def exported_monitor_metrics() -> set[str]:
    """The series names the monitor's code defines, as Prometheus sees them (a
    Counter named x is exported as x_total; prometheus_client drops a given _total)."""
    suffixes = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"]}
    names: set[str] = set()
    for path in (ROOT / "services" / "mrm" / "monitor").glob("*.py"):
        found = re.findall(r'\b(Counter|Gauge|Histogram)\(\s*"(mrm_monitor_\w+)"', path.read_text())
        for kind, name in found:
            names |= {name.removesuffix("_total") + s for s in suffixes[kind]}
    return names


def test_proxy_metrics_are_scraped_and_the_rules_name_real_metrics() -> None:
    from prometheus_client import generate_latest

    from mrm.proxy.metrics import Counts, Snapshot, prometheus_registry

    objects = render("overlays/prometheus-operator")
    proxy = of_kind(objects, "Deployment")["mrm-proxy"]
    annotations = proxy["spec"]["template"]["metadata"]["annotations"]
    (container,) = pod_spec(proxy)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    # loopback unless told otherwise; the pod says every interface on the declared port
    assert Settings.model_fields["proxy_metrics_addr"].default == f"localhost:{ports['metrics']}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MRM_PROXY_METRICS_ADDR"] == f"0.0.0.0:{ports['metrics']}"
    proxy_in = of_kind(objects, "NetworkPolicy")["mrm-proxy"]["spec"]["ingress"]
    assert {"protocol": "TCP", "port": ports["metrics"]} in [
        p for r in proxy_in for p in r["ports"]
    ]
    monitors = of_kind(objects, "PodMonitor")
    assert monitors["mrm-proxy"]["spec"]["selector"] == proxy["spec"]["selector"]
    assert monitors["mrm-proxy"]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # every mrm_proxy_* series a rule uses is one the proxy exports
    snapshot = Snapshot(Counts(1), {("m", "1"): Counts(1)}, 0, 1, 0, 1, 0, 0)
    registry, inference = prometheus_registry(lambda: snapshot)
    inference.observe("m", "1", True, 0.001)
    exported = set(re.findall(r"^(mrm_proxy_\w+)", generate_latest(registry).decode(), re.M))
    (rule,) = of_kind(objects, "PrometheusRule").values()
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"\b(mrm_proxy_\w+)", e)}
    assert used
    assert used <= exported, used - exported


def test_the_monitor_runs_once_is_scraped_and_reaches_what_it_needs() -> None:
    objects = render("overlays/prometheus-operator")
    deployment = of_kind(objects, "Deployment")["mrm-monitor"]
    # a single follower, never two at once (each would send every webhook)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "mrm-monitor" not in of_kind(objects, "HorizontalPodAutoscaler")
    (container,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(Settings.model_fields["monitor_addr"].default.rpartition(":")[2])
    metrics_port = int(Settings.model_fields["monitor_metrics_addr"].default.rpartition(":")[2])
    assert ports["metrics"] == metrics_port
    env = {e["name"]: e for e in container["env"]}
    assert env["MRM_MONITOR_METRICS_ADDR"]["value"] == f"0.0.0.0:{metrics_port}"
    assert env["MRM_MONITOR_TOKEN_FILE"]["value"] == "/etc/mrm/auth/monitor.token"
    # outcomes' subject ids are hashed with the proxy's key, from the same Secret
    assert env["MRM_SUBJECT_KEY_FILE"]["value"] == "/etc/mrm/subject/subject.key"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/mrm/subject"]]["secret"]["secretName"] == "mrm-subject-key"
    # webhook URLs are credentials: from a Secret, and the pod starts without it
    webhooks = env["MRM_MONITOR_WEBHOOKS"]["valueFrom"]["secretKeyRef"]
    assert webhooks == {"name": "mrm-monitor-webhooks", "key": "webhooks.json", "optional": True}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    podmonitor = of_kind(objects, "PodMonitor")["mrm-monitor"]
    assert podmonitor["spec"]["selector"] == deployment["spec"]["selector"]
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"

    policies = of_kind(objects, "NetworkPolicy")
    spec = policies["mrm-monitor"]["spec"]
    inbound = {p["port"] for r in spec["ingress"] for p in r["ports"]}
    assert inbound == {ports["grpc"], metrics_port}
    outbound = {p["port"] for r in spec["egress"] for p in r["ports"]}
    assert {SERVICES["ledger"], SERVICES["registry"], 443} <= outbound
    for callee in ("mrm-ledger", "mrm-registry"):
        (expr,) = policies[callee]["spec"]["ingress"][0]["from"][0]["podSelector"][
            "matchExpressions"
        ]
        assert "mrm-monitor" in expr["values"], callee


def test_the_monitor_rules_name_metrics_the_monitor_exports() -> None:
    exported = exported_monitor_metrics()
    # the grep finds what it should (a guard against the pattern silently matching nothing)
    assert {"mrm_monitor_records_total", "mrm_monitor_lag_records"} <= exported
    assert "mrm_monitor_webhook_failures_total" in exported
    (rule,) = of_kind(render("overlays/prometheus-operator"), "PrometheusRule").values()
    (group,) = [g for g in rule["spec"]["groups"] if g["name"] == "mrm-monitor"]
    alerts = {r["alert"]: r for r in group["rules"]}
    used: set[str] = set()
    for name, r in alerts.items():
        names = set(re.findall(r"\b(mrm_monitor_\w+)", r["expr"]))
        assert names, f"{name} uses no monitor metric"
        used |= names
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"], name
    assert used <= exported, used - exported
    # alerts raised, not scraped at all, lagging, failing to follow, webhooks failing
    for metric in (
        "mrm_monitor_alerts_total",
        "mrm_monitor_records_total",
        "mrm_monitor_lag_records",
        "mrm_monitor_follow_errors_total",
        "mrm_monitor_webhook_failures_total",
        "mrm_monitor_webhook_given_up_total",
    ):
        assert metric in used, metric


def test_the_dashboard_reads_with_its_own_token_and_reaches_the_monitor_and_proxy() -> None:
    objects = render("base")
    (container,) = pod_spec(of_kind(objects, "Deployment")["mrm-explain"])["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    # the auditor token `mrm auth init` issues (the explainer's may not read the
    # monitor or the proxy), from the mrm-auth items the test above pins
    assert env["MRM_DASHBOARD_TOKEN_FILE"] == "/etc/mrm/auth/dashboard.token"
    assert bootstrap.LOCAL["dashboard"][1] == (Role.AUDITOR,)
    assert env["MRM_MONITOR_ADDR"] == f"mrm-monitor:{SERVICES['monitor']}"
    assert env["MRM_PROXY_ADDR"] == f"mrm-proxy:{SERVICES['proxy']}"
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "MRM_DASHBOARD_TOKEN_FILE" in readme

    policies = of_kind(objects, "NetworkPolicy")
    egress = policies["mrm-explain"]["spec"]["egress"]
    reached = {
        (r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], p["port"])
        for r in egress
        for p in r["ports"]
    }
    assert {("mrm-monitor", 50054), ("mrm-proxy", 8001)} <= reached
    for callee, port in (("mrm-monitor", 50054), ("mrm-proxy", 8001)):
        admitted = False
        for rule in policies[callee]["spec"]["ingress"]:
            if port not in {p["port"] for p in rule["ports"]}:
                continue
            for peer in rule["from"]:
                labels = peer.get("podSelector", {}).get("matchLabels")
                # same namespace by name, or every pod of every namespace
                by_name = "namespaceSelector" not in peer and labels == {
                    "app.kubernetes.io/name": "mrm-explain"
                }
                admitted |= by_name or peer == {"namespaceSelector": {}}
        assert admitted, callee
