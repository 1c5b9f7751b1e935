"""Checks deploy/ beyond its schemas: every file kustomization.yaml names exists, and every
platform container of compose.yaml and of the Kubernetes manifests starts from a
configuration `flotilla config check` accepts (the image's ENV from the Dockerfile, then the
container's FLOTILLA_* environment, with secrets and pod fields replaced by stand-ins and
mounted routes files by their source under deploy/).

usage: deploy_env_check.py FLOTILLA_BINARY DEPLOY_DIR   (run by scripts/deploy-check.sh)
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROLES = {"up", "registry", "gateway", "bus", "store", "orchestrator"}
SHOP_SECTIONS = ("FLOTILLA_SERVICE__", "FLOTILLA_PLATFORM__", "FLOTILLA_SHOP__")
SECRETS = {
    "registry-token": "deploy-check-token",
    "postgres-url": "postgres://flotilla:secret@postgres:5432/flotilla",
    "postgres-password": "secret",
}


def interpolate(value):
    """Compose's ${VAR:-default} and ${VAR:?message}, with stand-ins for required values."""
    def one(m):
        name, op, rest = m.group(1), m.group(2), m.group(3)
        if op == ":-":
            return os.environ.get(name, rest)
        return os.environ.get(name, "deploy-check-token")
    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, str(value))


def image_env(deploy):
    """The ENV of the Dockerfile's last stage (`ENV K=V \\` continued lines)."""
    text = (deploy / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.rsplit("\nFROM ", 1)[-1]
    env = {}
    for line in stage.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


IMAGE_ENV = {}


def config_check(binary, where, env, mounts):
    env = {k: mounts.get(v, v) for k, v in {**IMAGE_ENV, **env}.items()}
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run([binary, "config", "check"], env={**base, **env},
                          capture_output=True, text=True)
    if done.returncode != 0:
        return [f"{where}: flotilla config check refused its environment:\n{done.stderr.strip()}"]
    return []


def shop_keys(where, env):
    return [f"{where}: {k} is not a key of the shop's services" for k in env
            if k.startswith("FLOTILLA_") and not k.startswith(SHOP_SECTIONS)]


def compose(binary, deploy):
    doc = yaml.safe_load((deploy / "compose.yaml").read_text())
    problems, seen = [], 0
    for name, svc in doc["services"].items():
        if not str(svc.get("image", "")).startswith("flotilla:"):
            continue
        env = {k: interpolate(v) for k, v in (svc.get("environment") or {}).items()}
        command = svc.get("command") or ["up"]
        mounts = {}
        for volume in svc.get("volumes") or []:
            source, target = volume.split(":")[:2]
            mounts[target] = str((deploy / source).resolve())
            if not Path(mounts[target]).is_file():
                problems.append(f"compose {name}: mounted file {source} does not exist")
        seen += 1
        if command[0] in ROLES:
            problems += config_check(binary, f"compose {name}", env, mounts)
        else:
            problems += shop_keys(f"compose {name}", env)
    return problems, seen


def env_of(container):
    env = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            env[var["name"]] = SECRETS[source["secretKeyRef"]["key"]]
        elif "fieldRef" in source:
            env[var["name"]] = "10.0.0.1" if "IP" in source["fieldRef"]["fieldPath"] else "pod-0"
        else:
            env[var["name"]] = var["value"]
    return env


def kubernetes(binary, deploy):
    problems, seen = [], 0
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                where = f"{path.name} {doc['metadata']['name']}"
                mounts = {m["mountPath"]: str(deploy / "config" / m["subPath"])
                          for m in container.get("volumeMounts") or [] if "subPath" in m}
                env = env_of(container)
                seen += 1
                if container["args"][0] in ROLES:
                    problems += config_check(binary, where, env, mounts)
                else:
                    problems += shop_keys(where, env)
    return problems, seen


def kustomization(deploy):
    doc = yaml.safe_load((deploy / "kustomization.yaml").read_text())
    named = list(doc.get("resources", []))
    for generator in doc.get("configMapGenerator", []):
        named += generator.get("files", [])
    return [f"kustomization.yaml names {f}, which does not exist"
            for f in named if not (deploy / f).is_file()]


def main():
    binary, deploy = sys.argv[1], Path(sys.argv[2]).resolve()
    IMAGE_ENV.update(image_env(deploy))
    if not IMAGE_ENV:
        print("the Dockerfile sets no ENV: the check would miss the image's defaults", file=sys.stderr)
        sys.exit(1)
    problems = kustomization(deploy)
    found_compose, in_compose = compose(binary, deploy)
    found_kube, in_kube = kubernetes(binary, deploy)
    problems += found_compose + found_kube
    for p in problems:
        print(p, file=sys.stderr)
    print(f"  {in_compose} compose containers, {in_kube} Kubernetes containers checked")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
