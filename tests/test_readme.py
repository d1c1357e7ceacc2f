"""Every code block of the README runs as a new user would run it, in the README's order.

The Python blocks run in one fresh process, one after the other (the import order a
reader follows: ``generate()`` first, then a forked ``DataLoader``); the CLI blocks run
as commands, at small sizes; the YAML block is validated. ``make`` blocks are the
set-up itself and are not rerun.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.DOTALL)


def _workdir(tmp_path: Path) -> Path:
    """A directory laid out like the checkout: ``configs/`` and ``../shared`` resolve."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    return work


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_readme_has_the_blocks_this_test_runs():
    langs = [lang for lang, _ in BLOCKS]
    assert langs.count("python") >= 2 and "yaml" in langs and "bash" in langs


def test_python_blocks_run_in_one_process_in_order(tmp_path):
    """The README's Python snippet, then its PyTorch snippet (a DataLoader with forked
    workers after ``generate()`` ran the parallel kernels), in one process."""
    pytest.importorskip("torch")
    script = "\n\n".join(code for lang, code in BLOCKS if lang == "python")
    script += "\nassert len(out) == len(frame)\nassert batch['targets'].shape[0] == 32\nprint('README OK')\n"
    work = _workdir(tmp_path)
    (work / "readme_blocks.py").write_text(script, encoding="utf-8")
    proc = subprocess.run([sys.executable, "readme_blocks.py"], cwd=work, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "README OK" in proc.stdout
    assert "Terminating" not in proc.stderr


def test_yaml_block_is_a_valid_config():
    from gpu_targets.spec import load_config

    (block,) = [code for lang, code in BLOCKS if lang == "yaml"]
    cfg = load_config(block)
    assert [t.name for t in cfg.targets][:1] == ["grocery_daily_cumsum"]


def _cli_commands() -> list[list[str]]:
    """The README's ``gpu-targets`` commands (continuation lines joined, comments dropped)."""
    commands = []
    for lang, code in BLOCKS:
        if lang != "bash":
            continue
        text = code.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(".venv/bin/gpu-targets"):
                commands.append(shlex.split(line)[1:])
    return commands


def test_cli_blocks_run_in_order(tmp_path):
    commands = _cli_commands()
    assert commands, "the README shows no gpu-targets command"
    uses_shared = any(any("../shared" in a for a in c) for c in commands)
    if uses_shared and not SHARED.is_dir():
        pytest.skip("the README's CLI block reads ../shared/data")
    work = _workdir(tmp_path)
    for args in commands:
        if args[0] == "demo":  # small sizes: the demo's own default is a benchmark
            args = [*args[:1], "--users", "20", "--tx-per-user", "64"]
        proc = subprocess.run([sys.executable, "-m", "gpu_targets.cli", *args], cwd=work, env=_env(),
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"gpu-targets {' '.join(args)}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
