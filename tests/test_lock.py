"""Reproducible installs: requirements.lock pins every package of this environment, agrees with the top-level
pins, and is what `make install`, both Dockerfiles and CI install with."""

from __future__ import annotations

import re
from importlib.metadata import distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version.strip()
    return out


def test_lock_covers_every_installed_package_at_its_version():
    """The lock is this very environment (built with it): nothing installed floats outside it."""
    lock = _pins(REPO / "requirements.lock")
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version.split("+")[0] for d in distributions()}
    installed = {n: v for n, v in installed.items() if n not in ("ragtrail", "pip", "setuptools", "wheel")}
    assert {n: v for n, v in installed.items() if lock.get(n) != v} == {}
    assert set(lock) <= set(installed)


def test_top_level_pins_agree_with_the_lock():
    lock = _pins(REPO / "requirements.lock")
    for req in ("requirements.txt", "requirements-dev.txt"):
        for name, version in _pins(REPO / req).items():
            assert lock.get(name) == version, (req, name, version, lock.get(name))


def test_make_install_dockerfiles_and_ci_use_the_lock():
    make = (REPO / "Makefile").read_text()
    install = make.split("$(STAMP):", 1)[1].split("\ninstall:", 1)[0]
    assert "requirements.lock" in install.splitlines()[0]  # a lock change reinstalls
    installs = [line for line in install.splitlines() if "torch==" in line or "-r requirements" in line]
    assert len(installs) == 2 and all("install -c requirements.lock" in line for line in installs)
    assert "\nlock:" in make and "pip freeze" in make  # the documented refresh command
    assert re.search(r"pip install .*-c /opt/ragtrail/requirements.lock", (REPO / "Dockerfile").read_text())
    assert "-c /tmp/requirements.lock" in (REPO / "docker" / "mlflow.Dockerfile").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make lock" in (REPO / "docs" / "compose.md").read_text()
