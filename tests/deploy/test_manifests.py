"""k8s/: valid against the Kubernetes schemas, runnable by the CLI, named like the settings.

The schemas are those ``kubernetes-validate`` ships, in strict mode (an unknown field, e.g. a
misspelt ``readinessProbe``, is an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import (
    PYTHON_VARIABLES,
    ROOT,
    dockerfile,
    helper_variables,
    parse_cli,
    variables_read,
)

K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.33"
"""Oldest minor version the manifests must be valid for (in support until mid 2026)."""


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def resources() -> list[dict[str, Any]]:
    """Every object of every manifest in k8s/ (the kustomization is not a cluster object)."""
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in documents(path)
    ]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] == kind]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets: its ``env`` and what ``envFrom`` brings in."""
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in by_kind("Secret")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
        else:
            env.update(secrets[source["secretRef"]["name"]])
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else f"<{var['valueFrom']}>"
    return env


def engine_containers() -> list[tuple[str, dict[str, Any]]]:
    """(owner kind, container) of every container that runs the engine's image."""
    return [
        (r["kind"], c)
        for r in resources()
        if r["kind"] in ("StatefulSet", "Job")
        for c in pod_spec(r)["containers"]
    ]


@pytest.mark.parametrize(
    "path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_each_manifest_is_valid_for_kubernetes(path: str) -> None:
    for doc in documents(K8S / path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    # the check above has teeth: the same StatefulSet with a typo is refused
    sts = by_kind("StatefulSet")[0]
    container = pod_spec(sts)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(sts, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_every_command_line_is_one_the_cli_accepts() -> None:
    _, entrypoint, _ = dockerfile()
    assert entrypoint == ["wedding-engine"]
    commands = []
    for _, container in engine_containers():
        assert container["image"].split(":")[0] == "wedding-engine"
        assert "command" not in container  # the image's entrypoint: wedding-engine
        commands.append(parse_cli(container["args"]).command)
    assert sorted(commands) == ["init", "worker"]


def test_every_variable_set_is_one_the_code_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    read = variables_read(monkeypatch)
    for kind, container in engine_containers():
        env = container_env(container)
        helpers = helper_variables(env)
        unknown = set(env) - read - helpers - PYTHON_VARIABLES
        assert not unknown, f"{kind} {container['name']}: not read by the code: {unknown}"
        # a helper is set in the same container, before the variable that uses it
        names = [v["name"] for v in container.get("env", [])]
        for helper in helpers:
            users = [n for n in names if f"$({helper})" in env[n]]
            assert helper in names and all(names.index(helper) < names.index(u) for u in users)


def test_a_misspelt_variable_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    read = variables_read(monkeypatch)
    assert {"KAFKA_BOOTSTRAP", "POSTGRES_DSN", "WEDDING_WEB_BIND", "WEDDING_SMTP_HOST"} <= read
    assert "WEDDING_WEB_HOSTNAME" not in read and "POSTGRES_URL" not in read


def dsn_user(dsn: str) -> str:
    return urlsplit(dsn).username or ""


def test_roles_the_workers_are_app_and_system_the_init_job_is_owner() -> None:
    (sts,) = by_kind("StatefulSet")
    (job,) = by_kind("Job")
    worker = container_env(pod_spec(sts)["containers"][0])
    init = container_env(pod_spec(job)["containers"][0])
    assert dsn_user(worker["POSTGRES_DSN"]) == "wedding_app"
    assert dsn_user(worker["POSTGRES_SYSTEM_DSN"]) == "wedding_system"
    assert "POSTGRES_OWNER_DSN" not in worker  # a worker never holds the owner's login
    assert dsn_user(init["POSTGRES_OWNER_DSN"]) == "wedding_owner"
    assert "POSTGRES_DSN" not in init and "POSTGRES_SYSTEM_DSN" not in init
    for name in ("WEDDING_JWT_SECRET", "WEDDING_LINK_SECRET", "WEDDING_MASTER_KEY"):
        assert name in worker and name not in init


def test_workers_are_a_statefulset_named_by_their_pods() -> None:
    (sts,) = by_kind("StatefulSet")
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind("Service")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for spec in services.values():
        assert spec["selector"] == labels
    container = pod_spec(sts)["containers"][0]
    env = container_env(container)
    # the advertised name: <pod>.<headless service>, the pod's stable DNS name
    assert env["WEDDING_WEB_HOST"] == f"$(POD_NAME).{sts['spec']['serviceName']}"
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # tables on a volume per pod, mounted where the image keeps them
    image_env, _, _ = dockerfile()
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == image_env["WEDDING_DATA_DIR"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # the artifact store is shared by every worker
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert mounts["artifacts"] == image_env["WEDDING_ARTIFACT_DIR"]
    claim_name = volumes["artifacts"]["persistentVolumeClaim"]["claimName"]
    (pvc,) = [p for p in by_kind("PersistentVolumeClaim") if p["metadata"]["name"] == claim_name]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_probes_ports_and_budget() -> None:
    (sts,) = by_kind("StatefulSet")
    container = pod_spec(sts)["containers"][0]
    image_env, _, _ = dockerfile()
    (port,) = container["ports"]
    assert str(port["containerPort"]) == image_env["WEDDING_WEB_PORT"]
    # 503 while recovering or without broker or database; 200 while the event loop answers
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    # 1 GiB: the measured peaks (339 MiB folding, 312 MiB rendering) together, with headroom
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["resources"]["requests"]["memory"] == "512Mi"
    assert pod_spec(sts)["terminationGracePeriodSeconds"] >= 60
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] < sts["spec"]["replicas"]
