"""The Kubernetes manifests (deploy/kubernetes) render with ``kubectl kustomize`` and every
resource validates against Kubernetes' own schemas (``kubernetes-validate``, strict: an
unknown field is an error). No cluster runs here; docs/kubernetes.md says how to deploy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from _required import unavailable

MANIFESTS = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl is not installed (Debian package kubernetes-client)")
    done = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_manifests_render_and_validate() -> None:
    # When kustomize renders the manifests
    resources = rendered()
    # Then each resource is valid for Kubernetes 1.30 (strict)
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    # And they hold what a cluster needs, all in the squall namespace
    kinds = {(r["kind"], r["metadata"]["name"]) for r in resources}
    assert {
        ("Deployment", "squall-controller"),
        ("Service", "squall-api"),
        ("DaemonSet", "squall-invoker"),
        ("StatefulSet", "postgres"),
        ("StatefulSet", "nats"),
        ("Secret", "squall-keys"),
        ("ConfigMap", "squall-config"),
    } <= kinds
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {
        "squall"
    }


def test_every_container_has_probes_and_resources() -> None:
    for resource in rendered():
        spec = resource.get("spec", {}).get("template", {}).get("spec")
        if spec is None:
            continue
        for container in spec["containers"]:
            # Then probes tell Kubernetes when to send traffic and when to restart, and
            # requests let the scheduler place the pod
            name = (resource["metadata"]["name"], container["name"])
            assert "readinessProbe" in container and "livenessProbe" in container, name
            assert container["resources"]["requests"]["memory"], name
            assert container["image"].startswith("squall/squall:"), name


def test_only_invokers_are_privileged() -> None:
    privileged = {
        r["metadata"]["name"]
        for r in rendered()
        for c in r.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        if c.get("securityContext", {}).get("privileged")
    }
    assert privileged == {"squall-invoker"}
