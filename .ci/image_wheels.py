#!/usr/bin/env python3
"""Prove that every runtime dependency of the container image installs from wheels alone, on x86_64 and arm64.

There is no container engine here, so pip resolves the image's install the way
the image's own pip would: the requirements of ``pyproject.toml`` with the
extras the Dockerfile installs, for the Dockerfile's Python and the glibc of
its Debian release, with ``--only-binary=:all:`` (no source build anywhere),
one architecture at a time. Only the project itself is built from source, in
the Dockerfile's builder stage (which has gcc for its C extensions).

``pip install --dry-run --report`` resolves with the same finder and tags as
``pip download`` but reads the wheels' metadata instead of downloading them
(PyPI serves it apart). The machine's pip configuration (local indexes,
constraints) is left out: the image has none. Needs PyPI; about half a
minute per architecture.

    python3 .ci/image_wheels.py          # exit 0: every dependency has a wheel; else pip's reason
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The image's architectures, as docker calls them and as wheel tags do.
ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64"}
#: The glibc of each Debian release a ``python:*-slim-RELEASE`` image is built on.
GLIBC = {"bookworm": (2, 36), "trixie": (2, 41)}
#: The oldest manylinux (PEP 600) glibc a wheel names; ``manylinux2014`` is its legacy alias.
OLDEST_GLIBC_MINOR = 5


def base_image(dockerfile: str) -> tuple[str, tuple[int, int]]:
    """The Python version and glibc of the Dockerfile's ``PYTHON_IMAGE``.

    >>> base_image("ARG PYTHON_IMAGE=python:3.11-slim-trixie\\nFROM ${PYTHON_IMAGE}")
    ('3.11', (2, 41))
    """
    found = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim-(\w+)$", dockerfile, re.MULTILINE)
    if found is None:
        raise SystemExit("the Dockerfile's ARG PYTHON_IMAGE is not python:X.Y-slim-RELEASE: its glibc is unknown")
    version, release = found.groups()
    if release not in GLIBC:
        raise SystemExit(f"the glibc of Debian {release} is unknown here: add it to GLIBC")
    return version, GLIBC[release]


def image_extras(dockerfile: str) -> list[str]:
    """The extras of the project that the Dockerfile's builder installs.

    >>> image_extras('RUN pip wheel --wheel-dir /wheels ".[confluent,s3]"')
    ['confluent', 's3']
    """
    found = re.search(r'pip wheel .*"\.\[([\w,]+)\]"', dockerfile)
    return found.group(1).split(",") if found else []


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The project's dependencies with those of ``extras``, its own extras (``name[extra]``) unfolded.

    >>> project = {"name": "p", "dependencies": ["a>=1"], "optional-dependencies": {"x": ["b", "p[y]"], "y": ["c"]}}
    >>> requirements(project, ["x"])
    ['a>=1', 'b', 'c']
    """
    own = re.compile(rf"^{re.escape(project['name'])}\[([\w,]+)\]$")
    wanted, pending, seen = list(project["dependencies"]), list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in project["optional-dependencies"][extra]:
            unfolded = own.match(requirement)
            if unfolded:
                pending += unfolded.group(1).split(",")
            else:
                wanted.append(requirement)
    return wanted


def platforms(architecture: str, glibc: tuple[int, int]) -> list[str]:
    """Every manylinux tag a system of ``glibc`` runs, newest first (pip expands none of the PEP 600 ones).

    >>> platforms("aarch64", (2, 18))
    ['manylinux_2_18_aarch64', 'manylinux_2_17_aarch64', 'manylinux2014_aarch64']
    """
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{architecture}" for m in range(minor, 16, -1)]
    tags.append(f"manylinux2014_{architecture}")
    if architecture == "x86_64":  # PEP 600's older names, with their aliases
        tags += [f"manylinux_2_{m}_x86_64" for m in range(16, OLDEST_GLIBC_MINOR - 1, -1)]
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def resolve(wanted: list[str], python: str, architecture: str, glibc: tuple[int, int]) -> tuple[int, str, list]:
    """pip's exit code, its error output, and the files it chose (name, version, file name)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environ.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if "PIP_CERT" in os.environ:  # a proxy's CA, if the machine reaches PyPI through one
        environ["PIP_CERT"] = os.environ["PIP_CERT"]
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--only-binary=:all:", "--index-url", "https://pypi.org/simple",
            "--python-version", python, "--implementation", "cp",
            *(f"--platform={tag}" for tag in platforms(architecture, glibc)),
            "--target", str(Path(directory) / "target"), "--report", str(report), *wanted,
        ]  # fmt: skip
        done = subprocess.run(command, env=environ, capture_output=True, text=True)
        chosen = []
        if done.returncode == 0:
            for item in json.loads(report.read_text())["install"]:
                url = item["download_info"]["url"]
                chosen.append((item["metadata"]["name"], item["metadata"]["version"], url.rsplit("/", 1)[-1]))
    return done.returncode, done.stderr, chosen


def main() -> int:
    dockerfile = (ROOT / "Dockerfile").read_text()
    python, glibc = base_image(dockerfile)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = image_extras(dockerfile)
    wanted = requirements(project, extras)
    failed = False
    for docker_name, architecture in ARCHITECTURES.items():
        code, errors, chosen = resolve(wanted, python, architecture, glibc)
        where = f"linux/{docker_name}: Python {python}, glibc {glibc[0]}.{glibc[1]}, extras {','.join(extras)}"
        if code != 0:
            failed = True
            print(f"{where}: not every dependency has a wheel\n{errors}", file=sys.stderr)
            continue
        built = [name for name, _, file in chosen if not file.endswith(".whl")]
        failed |= bool(built)
        print(f"{where}: {len(chosen)} wheels" + (f"; not wheels: {', '.join(built)}" if built else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
