"""The project as a package: the wheel it builds holds every package of ours, so that a
non-editable install imports each (stats was once left out: `import stats` failed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile

from tests.conftest import ROOT

PACKAGES = ("evalsite", "generation", "training", "stats")


def test_the_built_wheel_installs_in_a_fresh_venv_and_imports_every_package(tmp_path):
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds
    source = tmp_path / "source"
    skip = (".venv", ".git", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run([*pip, "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("lima_eval-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert set(PACKAGES) <= tops, tops
    assert "tests" not in tops and "bench" not in tops
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the third-party dependencies from this environment (torch alone is gigabytes), ours only from the wheel
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / "deps").mkdir()
    with open(f"{site}/deps.pth", "w") as pth:
        pth.write(sysconfig.get_paths()["purelib"] + "\n")
    install = [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    code = "; ".join(f"import {p}" for p in PACKAGES) + "; print(" + ", ".join(f"{p}.__file__" for p in PACKAGES) + ")"
    code += "; import django; django.setup(); import stats.intervals, generation.server, training.recipe"
    code += "; import evalsite.core.jobs, evalsite.dashboard.estimates"
    env = {"DJANGO_SETTINGS_MODULE": "evalsite.settings", "EVALSITE_VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin"}
    run = [str(python), "-c", code]
    imported = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert imported.returncode == 0, imported.stderr[-3000:]
    for path in imported.stdout.split():
        assert path.startswith(site), f"{path} is not the installed wheel's"
