"""One set of pins: pyproject.toml's, and every other place that names a version agrees with it.

conda.yaml (what `mlflow run` builds without --env-manager local), the README's install
commands, .ci/run, the Dockerfile and the developers' notes all name versions; a pin changed in
one place and not the others builds a different environment than the one tested. The
requirements every logged model carries are read from the installed xlrec's declared
dependencies (xlrec/platform/registry/requirements.py), so the code names no version.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
_REQ = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[0-9][\w.+!-]*)$")
# `name==version` inside any text: a package name not glued to a longer identifier
_PIN_IN_TEXT = re.compile(r"(?<![\w.-])(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?:\[[^\]\s]*\])?==(?P<version>[0-9][\w.+!-]*)")
_SKIP_DIRS = {
    ".git",
    ".venv",
    "build",
    "dist",
    "outputs",
    "ray_results",
    "mlartifacts",
    "mlruns",
    ".whl",
    ".whl2",
    "__pycache__",
    ".pytest_cache",
}
_TEXT_SUFFIXES = {".md", ".py", ".sh", ".toml", ".yaml", ".yml", ".txt", ".cfg"}
_TEXT_NAMES = {"Dockerfile", "MLproject", "run"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def exact_pins(requirements: list[str], where: str) -> dict[str, str]:
    pins = {}
    for req in requirements:
        m = _REQ.match(req.replace(" ", ""))
        assert m, f"{where}: {req!r} is not pinned to one version (name==version)"
        pins[norm(m["name"]) + (m["extras"] or "")] = m["version"]
    return pins


def runtime_pins() -> dict[str, str]:
    return exact_pins(pyproject()["project"]["dependencies"], "pyproject.toml dependencies")


def all_pins_by_name() -> dict[str, str]:
    """Runtime and test pins by bare package name (extras dropped)."""
    reqs = list(pyproject()["project"]["dependencies"])
    for extra in pyproject()["project"]["optional-dependencies"].values():
        reqs += extra
    return {key.split("[")[0]: v for key, v in exact_pins(reqs, "pyproject.toml").items()}


def test_every_dependency_is_pinned_exactly():
    pins = runtime_pins()
    assert {"torch", "numpy", "mlflow", "ray[tune,default]"} <= set(pins)
    all_pins_by_name()  # the test extras too


def test_conda_yaml_has_exactly_pyprojects_runtime_pins():
    env = yaml.safe_load((REPO / "conda.yaml").read_text())
    pip_section = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip_section) == 1, "conda.yaml: one `pip:` list holds the pins"
    reqs = [r for r in pip_section[0]["pip"] if r.strip() != "-e ."]
    assert "-e ." in pip_section[0]["pip"], "conda.yaml must install xlrec itself"
    conda, pins = exact_pins(reqs, "conda.yaml"), runtime_pins()
    assert sorted(set(pins) - set(conda)) == [], "pinned in pyproject.toml, missing from conda.yaml"
    assert sorted(set(conda) - set(pins)) == [], "in conda.yaml, not a runtime dependency in pyproject.toml"
    assert {k: (conda[k], pins[k]) for k in pins if conda[k] != pins[k]} == {}, "conda.yaml vs pyproject.toml"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    low = pyproject()["project"]["requires-python"].removeprefix(">=")

    def major_minor(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".")[:2])

    assert major_minor(python.split("=", 1)[1]) >= major_minor(low)


def repo_text_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]) or not path.is_file():
            continue
        if path.suffix in _TEXT_SUFFIXES or path.name in _TEXT_NAMES:
            files.append(path)
    return files


def test_every_version_named_anywhere_matches_the_pin():
    pins = all_pins_by_name()
    files = repo_text_files()
    assert {REPO / "README.md", REPO / ".ci" / "run", REPO / "docker" / "Dockerfile"} <= set(files)
    drift, seen = [], set()
    for path in files:
        for m in _PIN_IN_TEXT.finditer(path.read_text(errors="replace")):
            name = norm(m["name"])
            if name in pins:
                seen.add(path.relative_to(REPO).as_posix())
                if m["version"] != pins[name]:
                    drift.append(f"{path.relative_to(REPO)}: {m[0]} (pyproject.toml pins {name}=={pins[name]})")
    assert not drift, "\n".join(drift)
    assert {"README.md", ".ci/run", "docker/Dockerfile", "conda.yaml"} <= seen


def test_logged_models_require_the_serving_dependencies_at_their_installed_versions():
    from importlib.metadata import version

    from xlrec.platform.registry.requirements import SERVING, pip_requirements

    logged = exact_pins(pip_requirements(), "pip_requirements()")
    bare = {key.split("[")[0]: v for key, v in logged.items()}
    declared = {key.split("[")[0] for key in runtime_pins()}
    assert sorted(bare) == sorted(SERVING), "a logged model asks for exactly what serving it imports"
    assert sorted(set(bare) - declared) == [], "logged requirements that pyproject.toml does not declare"
    assert {name: v for name, v in bare.items() if version(name).split("+")[0] != v} == {}
    # this environment is the pinned one, so the logged versions are pyproject's pins
    pins = {key.split("[")[0]: v for key, v in runtime_pins().items()}
    assert {name: (v, pins[name]) for name, v in bare.items() if pins[name] != v} == {}


def test_readme_install_lines_are_the_cpu_and_cuda_builds_of_the_pinned_torch():
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)\n```", text, re.S)[1]
    commands = [ln for ln in first_block.splitlines() if ln.strip() and not ln.startswith("#")]
    torch = runtime_pins()["torch"]
    cpu, cuda = commands[0], commands[1]
    # the first command: a fresh ordinary machine gets the CPU build (PyPI's Linux torch is CUDA)
    assert f"pip install torch=={torch} --index-url https://download.pytorch.org/whl/cpu" in cpu
    assert cpu.rstrip().endswith('pip install -e ".[test]"')
    # right below it, the CUDA variant: PyPI's build
    assert f"pip install torch=={torch} &&" in cuda and "--index-url" not in cuda
    assert cuda.rstrip().endswith('pip install -e ".[test]"')


def test_ci_runs_exactly_the_readme_test_command():
    """The README's second command is the tests, and .ci/run ends by running exactly it: a fresh
    machine that follows the README gets what CI gets (Chromium, PostgreSQL, checks, pytest)."""
    readme = (REPO / "README.md").read_text()
    first_screen = readme[: readme.index("\n## ")]
    blocks = re.findall(r"```bash\n(.*?)```", first_screen, re.S)
    commands = [ln for ln in blocks[-1].splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands == ["scripts/test"], commands
    ci = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ci[-1] == "scripts/test"
    script = (REPO / "scripts" / "test").read_text()
    assert "chromium" in script and "pg_isready -h 127.0.0.1 -p 5432" in script and "scripts/check" in script
