"""deploy/k8s: every built-in kind validates against the Kubernetes schemas kubernetes-validate ships
(strict: unknown fields fail, offline); the RayCluster custom resource against a vendored structural schema
with its pod templates as real PodTemplates; and the manifests agree with each other and with the code."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from precog.gateway.metrics import GatewayMetrics
from tests.deploy.manifests import DEPLOY, gateway_paths, load_every_section, unknown_setting_variables
from tests.deploy.manifests import yaml_documents as documents_of

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.33"
CUSTOM_KINDS = {"RayCluster", "Kustomization"}
EXTERNAL_IMAGES = {"redis", "registry.k8s.io/kubectl"}
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
DOCUMENTS = [(path.name, doc) for path in MANIFESTS for doc in documents_of(path)]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    [doc] = [doc for doc in _kind(kind) if doc["metadata"]["name"] == name]
    return doc


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(owner, pod template) for every workload, including the RayCluster's head and worker groups."""
    templates = []
    for _, doc in DOCUMENTS:
        spec = doc.get("spec", {})
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "Job"):
            templates.append((name, spec["template"]))
        elif doc["kind"] == "CronJob":
            templates.append((name, spec["jobTemplate"]["spec"]["template"]))
        elif doc["kind"] == "RayCluster":
            templates.append((f"{name}/head", spec["headGroupSpec"]["template"]))
            templates += [(f"{name}/{g['groupName']}", g["template"]) for g in spec["workerGroupSpecs"]]
    return templates


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]


@pytest.mark.parametrize(
    "document",
    [doc for _, doc in DOCUMENTS if doc["kind"] not in CUSTOM_KINDS],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_manifest_validates_against_the_kubernetes_schema(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_strict_check_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(_named("Deployment", "precog-gateway"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_raycluster_is_structurally_valid_with_real_pod_templates() -> None:
    schema = json.loads((Path(__file__).parent / "raycluster.schema.json").read_text())
    [cluster] = _kind("RayCluster")
    jsonschema.validate(cluster, schema)
    for owner, template in _pod_specs():
        if owner.startswith("RayCluster/"):
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
            pod_template["template"] = template
            kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = documents_of(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_configmap_toml_loads_in_every_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "precog.toml"
    config.write_text(_named("ConfigMap", "precog-config")["data"]["precog.toml"])
    loaded = load_every_section(config, monkeypatch)
    assert loaded["gateway"].redis_url is not None  # type: ignore[attr-defined]


def test_every_precog_variable_is_a_real_setting() -> None:
    names = [e["name"] for _, t in _pod_specs() for c in _containers(t) for e in c.get("env", [])]
    assert names and unknown_setting_variables(names) == []


def test_gateway_probes_ask_routes_the_gateway_serves() -> None:
    [gateway] = _named("Deployment", "precog-gateway")["spec"]["template"]["spec"]["containers"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    probed = {gateway[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probed <= gateway_paths()


def test_backend_asks_for_a_gpu() -> None:
    [backend] = _named("Deployment", "precog-backend")["spec"]["template"]["spec"]["containers"]
    assert backend["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_services_select_pods_that_expose_their_target_port() -> None:
    deployments = {d["metadata"]["name"]: d["spec"]["template"] for d in _kind("Deployment")}
    for service in _kind("Service"):
        selector = service["spec"]["selector"]
        matching = [t for t in deployments.values() if selector.items() <= t["metadata"]["labels"].items()]
        assert len(matching) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in matching[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_volumes_claims_configmaps_and_images_resolve() -> None:
    claims = {c["metadata"]["name"] for c in _kind("PersistentVolumeClaim")}
    config_maps = {c["metadata"]["name"] for c in _kind("ConfigMap")}
    dockerfiles = {p.name.removeprefix("Dockerfile.") for p in (DEPLOY / "docker").glob("Dockerfile.*")}
    for owner, template in _pod_specs():
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for container in _containers(template):
            assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes.keys(), owner
            image = container["image"].split(":")[0]
            assert image in EXTERNAL_IMAGES or image.removeprefix("precog-") in dockerfiles, image
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, owner
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, owner


def test_hpa_scales_the_gateway_on_a_rate_the_gateway_exports() -> None:
    hpa = _named("HorizontalPodAutoscaler", "precog-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "precog-gateway"
    assert hpa["spec"]["minReplicas"] >= 2
    [pods_metric] = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    rules = yaml.safe_load(_named("ConfigMap", "precog-prometheus-adapter-rules")["data"]["rules.yaml"])
    [rule] = [r for r in rules["rules"] if r["name"]["as"] == pods_metric]
    series = rule["seriesQuery"].split("{")[0].strip("'")
    exposition = GatewayMetrics().render().decode()
    assert series.endswith("_total")
    assert {f"# TYPE {series} counter", f"# TYPE {series.removesuffix('_total')} counter"} & set(
        exposition.splitlines()
    )


def test_one_writer_and_precompute_stops_and_restarts_it() -> None:
    writer = _named("Deployment", "precog-writer")["spec"]
    assert writer["replicas"] == 1 and writer["strategy"]["type"] == "Recreate"
    assert writer["template"]["spec"]["containers"][0]["args"] == ["gateway", "writer"]
    store_claims = {
        owner
        for owner, template in _pod_specs()
        for volume in template["spec"].get("volumes", [])
        if volume.get("persistentVolumeClaim", {}).get("claimName") == "precog-store"
    }
    precompute_pods = {o for o in store_claims if not o.startswith(("Deployment/", "RayCluster/"))}
    assert store_claims - precompute_pods == {"Deployment/precog-writer", "RayCluster/precog-precompute/head"}
    rules = _named("Role", "precog-precompute")["rules"]
    assert any("deployments/scale" in r["resources"] and "patch" in r["verbs"] for r in rules)
    for owner in precompute_pods:
        [template] = [t for o, t in _pod_specs() if o == owner]
        steps = [c["command"][-1] if "command" in c else "precompute" for c in _containers(template)]
        assert steps == ["--replicas=0", "precompute", "--replicas=1"], owner
        assert template["spec"]["serviceAccountName"] == "precog-precompute"


def test_pdb_keeps_a_gateway_up_and_precompute_never_overlaps() -> None:
    pdb = _named("PodDisruptionBudget", "precog-gateway")
    labels = _named("Deployment", "precog-gateway")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] >= 1
    assert all(c["spec"]["concurrencyPolicy"] == "Forbid" for c in _kind("CronJob"))
