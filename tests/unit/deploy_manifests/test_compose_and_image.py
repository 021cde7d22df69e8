"""deploy/Dockerfile and deploy/docker-compose.yml, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import runpy
import shlex
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, cast

import click
import jsonschema
import pytest
import yaml

from mrm.admin import main as mrm_command
from mrm.core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
SERVICES = {"ledger", "registry", "explain", "proxy", "monitor"}


def compose() -> Any:
    return yaml.safe_load(COMPOSE.read_text())


def serve_choices() -> set[str]:
    serve = mrm_command.commands["serve"]
    return {str(c) for c in cast("click.Choice[str]", serve.params[0].type).choices}


def assert_mrm_command_exists(args: list[str]) -> None:
    """`args` (after the `mrm` entrypoint) name a real command of `mrm`."""
    command: click.Command = mrm_command
    words = list(args)
    while isinstance(command, click.Group):
        assert words, f"mrm {' '.join(args)}: names a group, not a command"
        word = words.pop(0)
        assert word in command.commands, f"mrm has no command {word!r} ({' '.join(args)})"
        command = command.commands[word]
    ctx = command.make_context("mrm", list(words), resilient_parsing=False)
    ctx.close()


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_file_validates_against_the_compose_spec() -> None:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema = json.loads(text)
    jsonschema.validate(compose(), schema)
    bad = compose()
    bad["services"]["ledger"]["depends_on"]["migrate"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_compose_services_health_checks_and_start_order() -> None:
    spec = compose()
    services = spec["services"]
    assert {"postgres", "jaeger", "migrate", *SERVICES} == set(services)
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in ("service_healthy", "service_completed_successfully")
            if cond["condition"] == "service_healthy":
                assert not services[dep].get("healthcheck", {}).get("disable"), dep
        if name != "migrate":
            assert "healthcheck" in svc or name in SERVICES, name
    assert services["migrate"]["command"] == ["db", "upgrade", "--app-role", "mrm_app"]
    assert_mrm_command_exists(services["migrate"]["command"])
    for name in SERVICES:
        assert services[name]["command"] == ["serve", name]
        assert services[name]["read_only"] is True
        env = services[name]["environment"]
        assert env["OTEL_SERVICE_NAME"] == f"mrm-{name}"
        assert f"MRM_{name.upper()}_ADDR" not in env  # listens on the image's 0.0.0.0 default
    health = spec["x-mrm"]["healthcheck"]["test"]
    assert health == ["CMD", "/opt/mrm/bin/python", "/opt/mrm/healthcheck.py"]


def test_compose_settings_are_real_and_secrets_come_from_files() -> None:
    spec = compose()
    fields = {f"MRM_{name.upper()}" for name in Settings.model_fields}
    declared = spec["secrets"]
    used: set[str] = set()
    for name, svc in spec["services"].items():
        env = svc.get("environment", {})
        for var, value in env.items():
            if var.startswith("MRM_"):
                assert var in fields, f"{name}: {var} is not a setting"
            assert "PASSWORD" not in var or var.endswith("_FILE"), (name, var)
            assert "password" not in str(value).lower() or var.endswith("_FILE"), (name, var)
            if str(value).startswith("/run/secrets/"):
                assert str(value).removeprefix("/run/secrets/") in svc["secrets"], (name, var)
        used |= set(svc.get("secrets", []))
    assert used == set(declared)
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/")
    assert (DEPLOY / ".gitignore").read_text().split() == ["secrets/"]
    script = (DEPLOY / "compose" / "make-secrets.sh").read_text()
    for secret in declared.values():
        assert secret["file"].removeprefix("./secrets/") in script
    volumes = {v.split(":")[0] for svc in spec["services"].values() for v in svc.get("volumes", [])}
    for volume in volumes:
        assert volume in spec["volumes"] or (DEPLOY / volume).is_file(), volume


def test_compose_metrics_listen_on_every_interface_at_the_published_port() -> None:
    services = compose()["services"]
    for name, var in (("proxy", "MRM_PROXY_METRICS_ADDR"), ("monitor", "MRM_MONITOR_METRICS_ADDR")):
        svc = services[name]
        host, _, port = svc["environment"][var].rpartition(":")
        assert host == "0.0.0.0", name  # the setting's default is loopback
        assert f"{port}:{port}" in svc["ports"], name
        default = Settings.model_fields[var.removeprefix("MRM_").lower()].default
        assert default.startswith("localhost:"), var
    monitor = services["monitor"]
    assert "50054:50054" in monitor["ports"]
    assert monitor["environment"]["MRM_MONITOR_TOKEN_FILE"] == "/run/secrets/mrm-monitor-token"
    assert monitor["environment"]["MRM_SUBJECT_KEY_FILE"] == "/run/secrets/mrm-subject-key"
    assert set(monitor["depends_on"]) == {"ledger", "registry"}
    assert monitor["environment"]["MRM_MONITOR_WEBHOOKS"] == "${MRM_MONITOR_WEBHOOKS:-}"
    assert any(v.endswith(":/var/lib/mrm") for v in monitor["volumes"])  # the webhook outbox
    # make-secrets.sh issues the monitor's token and hands it to the container's user
    script = (DEPLOY / "compose" / "make-secrets.sh").read_text()
    assert '"$dir/auth/monitor.token"' in script


def test_compose_dashboard_reads_with_its_own_token_from_the_other_containers() -> None:
    spec = compose()
    explain = spec["services"]["explain"]["environment"]
    assert explain["MRM_DASHBOARD_TOKEN_FILE"] == "/run/secrets/mrm-dashboard-token"
    assert spec["secrets"]["mrm-dashboard-token"]["file"] == "./secrets/auth/dashboard.token"
    # the monitor and the proxy by their compose names, at the ports they publish
    for name in ("monitor", "proxy"):
        host, _, port = explain[f"MRM_{name.upper()}_ADDR"].rpartition(":")
        assert host == name
        assert f"{port}:{port}" in spec["services"][name]["ports"], name
    # make-secrets.sh reruns `mrm auth init` for an auth/ without it, and hands it over
    script = (DEPLOY / "compose" / "make-secrets.sh").read_text()
    assert '[ -e "$dir/auth/dashboard.token" ]' in script
    assert '"$dir/auth/dashboard.token" "$dir/auth/session.key"' in script


def test_every_service_the_image_runs_listens_everywhere_and_is_health_checked() -> None:
    env = " ".join(rest for word, rest in dockerfile_instructions() if word == "ENV")
    addrs = dict(re.findall(r"(MRM_\w+_ADDR)=(\S+)", env))
    default_ports = runpy.run_path(str(DEPLOY / "docker" / "healthcheck.py"))["DEFAULT_PORTS"]
    for name in serve_choices():
        port = int(Settings.model_fields[f"{name}_addr"].default.rpartition(":")[2])
        assert addrs[f"MRM_{name.upper()}_ADDR"] == f"0.0.0.0:{port}", name
        assert default_ports[name] == port, name


def image_addresses() -> dict[str, str]:
    """The MRM_*_ADDR the image's ENV sets."""
    env = " ".join(rest for word, rest in dockerfile_instructions() if word == "ENV")
    return dict(re.findall(r"(MRM_\w+_ADDR)=(\S+)", env))


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


# The listeners of each service beside MRM_<NAME>_ADDR and MRM_<NAME>_*_ADDR.
OTHER_LISTENERS = {"explain": {"MRM_HTTP_ADDR"}}


def test_the_proxy_serves_oip_rest_on_every_interface_of_the_image() -> None:
    addrs = image_addresses()
    rest = port_of(Settings.model_fields["proxy_http_addr"].default)
    assert rest == 8080
    assert addrs["MRM_PROXY_HTTP_ADDR"] == f"0.0.0.0:{rest}"
    exposed = {
        int(p) for word, args in dockerfile_instructions() if word == "EXPOSE" for p in args.split()
    }
    assert rest in exposed
    # every address the image listens on is a port it exposes
    for var, address in addrs.items():
        assert port_of(address) in exposed, var


def test_the_all_in_one_example_publishes_every_port_the_image_listens_on() -> None:
    (example,) = [
        line for line in DOCKERFILE.read_text().splitlines() if "# `mrm up`, all in one" in line
    ]
    published: set[int] = set()
    for host, container in re.findall(r"-p (\S+):(\S+)", example):
        assert host == container, example
        first, _, last = container.partition("-")
        published |= set(range(int(first), int(last or first) + 1))
    for var, address in image_addresses().items():
        assert port_of(address) in published, var


def test_compose_publishes_every_listener_of_each_service_the_image_opens() -> None:
    image = image_addresses()
    services = compose()["services"]
    for name in SERVICES:
        svc = services[name]
        env = {**image, **{k: str(v) for k, v in svc["environment"].items()}}
        own = {
            var for var in env if var.endswith("_ADDR") and var.startswith(f"MRM_{name.upper()}_")
        }
        own |= OTHER_LISTENERS.get(name, set())
        own = {var for var in own if env[var].startswith("0.0.0.0:")}  # listeners, not peers
        assert f"MRM_{name.upper()}_ADDR" in own, name
        for var in own:
            port = port_of(env[var])
            assert f"{port}:{port}" in svc["ports"], (name, var)
    proxy = services["proxy"]
    # stated beside its published port, as the image sets it
    assert proxy["environment"]["MRM_PROXY_HTTP_ADDR"] == image["MRM_PROXY_HTTP_ADDR"]
    assert proxy["environment"]["MRM_PROXY_HTTP_ADDR"] == "0.0.0.0:8080"
    assert "8080:8080" in proxy["ports"]


def test_every_path_the_dockerfile_copies_exists() -> None:
    copies = [rest for word, rest in dockerfile_instructions() if word == "COPY"]
    assert copies
    sources = []
    for rest in copies:
        if rest.startswith("--from="):
            continue
        *srcs, _dest = shlex.split(rest)
        sources += srcs
    assert "deploy/docker/healthcheck.py" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    # The wheel's source roots must all be in the build context the builder copies.
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    for root in wheel["targets"]["wheel"]["packages"]:
        assert any(root.startswith(s.rstrip("/")) for s in sources), root


def test_the_dockerfile_entrypoint_and_commands_exist() -> None:
    instructions = dockerfile_instructions()
    entry = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in instructions if word == "CMD"]
    assert entry == [["mrm"]]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mrm"] == "mrm.admin:main"
    assert_mrm_command_exists(cmd[-1])
    users = [rest for word, rest in instructions if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0", "0:0")
    assert any(word == "HEALTHCHECK" for word, _ in instructions)
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith("AS builder")
    # The comments show how to run each service: all of them must exist.
    for name in re.findall(r"serve (\w+)", DOCKERFILE.read_text()):
        assert name in serve_choices(), name


def test_every_service_named_in_deploy_is_an_mrm_serve_choice() -> None:
    named: set[str] = set()
    for path in [COMPOSE, *(DEPLOY / "k8s").rglob("*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            text = json.dumps(doc)
            named |= set(re.findall(r'"serve", "(\w+)"', text))
    assert named == SERVICES
    missing = named - serve_choices()
    assert not missing, f"`mrm serve` does not offer {sorted(missing)} yet"
