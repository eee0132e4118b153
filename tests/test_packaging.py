"""A plain (non-editable) install works outside the repository."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("ebmbench-*.whl")
    return path


def test_wheel_ships_core_builtins_entry_points_and_no_generic_top_level(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ebmbench", "ebmbench_plugins"}
    assert "ebmbench_plugins/methods/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[ebmbench]" in entry_points and "ebmbench_plugins.methods" in entry_points
    assert "ebmbench = ebmbench.cli:main" in entry_points


@pytest.mark.slow
def test_installed_wheel_lists_the_builtins_from_outside_the_repo(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # Dependencies (torch, ...) come from this environment through a .pth file, so the test
    # does not download gigabytes; ebmbench itself comes only from the wheel.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # Only now: had pip seen the parent environment's own ebmbench, it would have skipped
    # the wheel as "already satisfied".
    Path(site, "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run([str(env_dir / "bin" / "ebmbench"), "list", "method"], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "dsm" in proc.stdout and "failed to load" not in proc.stdout
    where = subprocess.run([str(py), "-c", "import ebmbench_plugins; print(ebmbench_plugins.__file__)"],
                           cwd=workdir, capture_output=True, text=True, check=True).stdout
    assert where.startswith(site)
