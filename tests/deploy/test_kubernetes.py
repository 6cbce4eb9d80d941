"""The Kubernetes manifests (deploy/kubernetes), rendered as `kubectl apply -k` would, hold
what running the broker safely needs."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from broker.config import SECRET_OVERRIDES, Settings, load_settings
from broker.keys import AGENT_KEY_FILE, LINK_SECRET_FILE, RETIRED_KEYS_FILE
from tests.deploy.manifests import (
    DEPLOY,
    ROOT,
    dockerfile_instructions,
    only,
    pod_containers,
    pod_spec,
    render_kustomization,
)

KUBERNETES = DEPLOY / "kubernetes"
SECRET_VARIABLES = set(SECRET_OVERRIDES.values())
# The broker's Vault credential, for the other login methods: unused with kubernetes.
VAULT_LOGIN_VARIABLES = {"BROKER_VAULT_TOKEN", "BROKER_VAULT_SECRET_ID"}
# Things that look like real credentials (the repository's pre-stop check refuses them too).
SECRET_SHAPES = re.compile(
    r"AKIA[0-9A-Z]{16}|\bhvs\.[A-Za-z0-9_-]{20,}|xox[bap]-[A-Za-z0-9-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|postgres(?:ql)?(?:\+\w+)?://[^/\s:@]+:[^@\s]+@"
)


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render_kustomization(KUBERNETES)


@pytest.fixture(scope="module")
def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only(objects, "Deployment")


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = pod_spec(deployment)
    assert spec is not None
    return spec


@pytest.fixture(scope="module")
def broker(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["containers"] if c["name"] == "broker"]
    found: dict[str, Any] = container
    return found


@pytest.fixture(scope="module")
def settings(objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """broker.yaml exactly as the ConfigMap carries it, loaded by the broker's own loader."""
    config = only(objects, "ConfigMap")["data"]["broker.yaml"]
    path = tmp_path_factory.mktemp("config") / "broker.yaml"
    path.write_text(config)
    return load_settings(path, environ={})


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (match,) = [v for v in pod["volumes"] if v["name"] == name]
    found: dict[str, Any] = match
    return found


def mount_for(container: dict[str, Any], path: Path) -> dict[str, Any]:
    """The mount a path lives on (the longest mountPath that contains it)."""
    candidates = [
        m
        for p, m in mounts(container).items()
        if PurePosixPath(path) == PurePosixPath(p)
        or PurePosixPath(p) in PurePosixPath(path).parents
    ]
    assert candidates, f"{path} is on no volume (the root filesystem is read-only)"
    return max(candidates, key=lambda m: len(m["mountPath"]))


def test_every_manifest_parses_and_the_base_has_each_kind(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    for obj in objects:
        assert obj["apiVersion"] and obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "credential-broker"


def test_two_or_more_replicas_rolled_without_losing_capacity(deployment: dict[str, Any]) -> None:
    assert deployment["spec"]["replicas"] >= 2
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1


def test_probes_readiness_on_readyz_and_liveness_on_healthz(broker: dict[str, Any]) -> None:
    ports = {p["name"]: p["containerPort"] for p in broker["ports"]}
    for probe, path in (
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ):
        http = broker[probe]["httpGet"]
        assert http["path"] == path, probe
        assert http["port"] in ports, f"{probe} names port {http['port']}, not a container port"
    # Liveness must tolerate a busy worker longer than readiness does.
    live, ready = broker["livenessProbe"], broker["readinessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30
    assert ready["periodSeconds"] * ready["failureThreshold"] <= 15


def test_the_broker_listens_where_probes_and_the_service_point(
    broker: dict[str, Any], settings: Settings, objects: list[dict[str, Any]]
) -> None:
    host, _, port = settings.listen.rpartition(":")
    assert host == "0.0.0.0"
    assert {p["containerPort"] for p in broker["ports"]} == {int(port)}
    service = only(objects, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [broker["ports"][0]["name"]]
    assert settings.public_url.startswith("https://")


def test_every_container_has_requests_and_limits(deployment: dict[str, Any]) -> None:
    for container in pod_containers(deployment):
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), (container["name"], kind)


def test_security_context_non_root_read_only_no_capabilities(
    pod: dict[str, Any], deployment: dict[str, Any]
) -> None:
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod_containers(deployment):
        own = container["securityContext"]
        assert own["readOnlyRootFilesystem"] is True, container["name"]
        assert own["allowPrivilegeEscalation"] is False, container["name"]
        assert own["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in own["capabilities"]
        assert not own.get("privileged", False)


def test_the_pod_runs_as_the_images_user(pod: dict[str, Any]) -> None:
    users = [
        i.arguments for i in dockerfile_instructions(DEPLOY / "Dockerfile") if i.keyword == "USER"
    ]
    uid, _, gid = users[-1].partition(":")
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


def test_image_is_pinned(deployment: dict[str, Any]) -> None:
    for container in pod_containers(deployment):
        name, _, tag = container["image"].rpartition(":")
        assert name and tag and tag != "latest", container["image"]


def test_store_url_is_required_from_a_secret(broker: dict[str, Any]) -> None:
    env = {e["name"]: e for e in broker["env"]}
    store = env["BROKER_STORE_URL"]["valueFrom"]["secretKeyRef"]
    # Not optional: a missing URL would silently give each pod a SQLite file of its own.
    assert store.get("optional", False) is False


def test_the_broker_logs_in_to_vault_with_a_rotated_service_account_token(
    broker: dict[str, Any], pod: dict[str, Any], settings: Settings
) -> None:
    """No Vault token at rest: a kubernetes login with the projected token kubelet renews."""
    auth = settings.vault.auth
    assert (auth.method, auth.role) == ("kubernetes", "credential-broker")
    assert not VAULT_LOGIN_VARIABLES & {e["name"] for e in broker["env"]}
    path = PurePosixPath(str(auth.jwt_path))
    mount = mounts(broker)[str(path.parent)]
    assert mount["readOnly"] is True
    (source,) = volume(pod, mount["name"])["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["path"] == path.name and token["expirationSeconds"] <= 3600
    assert pod["automountServiceAccountToken"] is False  # no other API credential


def test_secrets_come_from_secrets_never_inline(
    broker: dict[str, Any], objects: list[dict[str, Any]]
) -> None:
    for variable in broker["env"]:
        if variable["name"] in SECRET_VARIABLES:
            assert "value" not in variable, variable["name"]
            assert "secretKeyRef" in variable["valueFrom"], variable["name"]
    named = {e["name"] for e in broker["env"]}
    assert SECRET_VARIABLES - VAULT_LOGIN_VARIABLES <= named, (
        f"not wired: {SECRET_VARIABLES - named}"
    )
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets are created, not shipped"


def test_no_credential_shaped_text_anywhere_in_deploy() -> None:
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            found = SECRET_SHAPES.search(path.read_text(errors="replace"))
            assert found is None, f"{path.relative_to(ROOT)}: {found.group(0)[:12]}..."


def test_config_in_the_configmap_is_valid_and_holds_no_secret(
    objects: list[dict[str, Any]], settings: Settings
) -> None:
    text = only(objects, "ConfigMap")["data"]["broker.yaml"]
    document = yaml.safe_load(text)
    assert "url" not in document.get("store", {}), "the store URL comes from BROKER_STORE_URL"
    assert settings.store_url is None and settings.vault.token is None
    assert settings.workers >= 1 and settings.threads >= 1


def test_config_approvers_and_groups_admit_the_example_scopes(
    settings: Settings, tmp_path: Path
) -> None:
    from broker.policy.iam_actions import iam_database
    from broker.scopes.lint import LintContext
    from broker.scopes.registry import load_scope_set

    result = load_scope_set(ROOT / "scopes", LintContext(iam=iam_database(), directory=settings))
    assert [str(p) for p in result.problems] == []


def test_paths_the_broker_writes_are_volumes(
    broker: dict[str, Any], pod: dict[str, Any], settings: Settings
) -> None:
    env = {e["name"]: e.get("value") for e in broker["env"]}
    writable = [settings.state_dir, Path("/tmp"), Path(env["PROMETHEUS_MULTIPROC_DIR"])]
    for path in writable:
        mount = mount_for(broker, path)
        assert not mount.get("readOnly", False), path
        assert "emptyDir" in volume(pod, mount["name"]), path


def test_config_and_scopes_are_mounted_read_only_where_the_image_looks(
    broker: dict[str, Any], pod: dict[str, Any], settings: Settings
) -> None:
    entrypoint = [
        i for i in dockerfile_instructions(DEPLOY / "Dockerfile") if i.keyword == "ENTRYPOINT"
    ]
    config_path = yaml.safe_load(entrypoint[-1].arguments)[-1]
    config = mounts(broker)[config_path]
    assert config["readOnly"] is True and config["subPath"] == "broker.yaml"
    assert volume(pod, config["name"])["configMap"]["name"] == "broker-config"
    scopes = mount_for(broker, settings.scopes_dir)
    assert scopes["readOnly"] is True
    assert volume(pod, scopes["name"])["configMap"]["name"] == "broker-scopes"
    # kubelet's atomic-writer view: see test_kubelet_volumes.py.
    assert settings.scopes_dir == Path(scopes["mountPath"]) / "..data"


def test_keys_come_from_one_secret_through_the_init_container(
    pod: dict[str, Any], broker: dict[str, Any], settings: Settings
) -> None:
    keys = volume(pod, "keys")["secret"]
    assert keys["secretName"] == "broker-keys"
    assert keys["defaultMode"] == 0o400
    assert {i["key"] for i in keys["items"]} == {
        AGENT_KEY_FILE,
        RETIRED_KEYS_FILE,
        LINK_SECRET_FILE,
    }
    (init,) = pod["initContainers"]
    command = init["command"]
    assert command[:3] == ["install", "-m", "0600"]
    secret_mount = [m for m in init["volumeMounts"] if m["name"] == "keys"][0]
    assert secret_mount["readOnly"] is True
    sources = command[3:-1]
    assert sorted(PurePosixPath(s).name for s in sources) == sorted(
        [AGENT_KEY_FILE, RETIRED_KEYS_FILE, LINK_SECRET_FILE]
    )
    assert all(s.startswith(secret_mount["mountPath"] + "/") for s in sources)
    # The target is the broker's state directory, the same volume in both containers.
    state = mount_for(broker, settings.state_dir)
    assert PurePosixPath(command[-1]) == PurePosixPath(str(settings.state_dir))
    assert [m["name"] for m in init["volumeMounts"] if m["mountPath"] == state["mountPath"]] == [
        state["name"]
    ]
    assert volume(pod, state["name"])["emptyDir"]["medium"] == "Memory"


def test_volume_mounts_name_existing_volumes(
    deployment: dict[str, Any], pod: dict[str, Any]
) -> None:
    names = {v["name"] for v in pod["volumes"]}
    for container in pod_containers(deployment):
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in names, (container["name"], mount["name"])


def test_selectors_match_the_pods(
    objects: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(only(objects, "Service")["spec"]["selector"])
    assert selects(only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(only(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])


def test_disruption_budget_keeps_a_replica_and_allows_drains(
    objects: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    budget = only(objects, "PodDisruptionBudget")["spec"]
    replicas = deployment["spec"]["replicas"]
    if "maxUnavailable" in budget:
        assert 1 <= budget["maxUnavailable"] < replicas
    else:
        assert 1 <= budget["minAvailable"] < replicas


def test_network_policy_limits_both_directions(
    objects: list[dict[str, Any]], broker: dict[str, Any]
) -> None:
    policy = only(objects, "NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    port = broker["ports"][0]["containerPort"]
    for rule in policy["ingress"]:
        assert rule["from"], "an ingress rule without sources admits everyone"
        assert [p["port"] for p in rule["ports"]] == [port]
    for rule in policy["egress"]:
        assert rule["ports"], "an egress rule without ports allows everything"
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert {53, 443, 5432, 8200} == egress_ports


def test_service_account_names_the_brokers_principal(
    objects: list[dict[str, Any]], pod: dict[str, Any], settings: Settings
) -> None:
    account = only(objects, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role == settings.aws.broker_principal_arn


def test_namespace_enforces_the_restricted_pod_security_standard(
    objects: list[dict[str, Any]],
) -> None:
    labels = only(objects, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_grace_period_covers_prestop_and_gunicorns_graceful_timeout(
    pod: dict[str, Any], broker: dict[str, Any]
) -> None:
    from broker.serve import BrokerServer

    graceful = int(str(BrokerServer(Settings()).options["graceful_timeout"]))
    pre_stop = int(broker["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful
