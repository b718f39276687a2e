"""The container image's dependencies install from wheels alone (``.ci/image_wheels.py``), on x86_64 and arm64.

The check itself needs PyPI (marker ``network``; about a minute); what it reads
of the Dockerfile and pyproject is checked offline.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("image_wheels", ROOT / ".ci" / "image_wheels.py")
image_wheels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(image_wheels)


def test_the_check_reads_the_images_python_glibc_and_extras():
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python, glibc = image_wheels.base_image(dockerfile)
    assert project["requires-python"] == ">=3.11" and python == "3.11"
    assert glibc >= (2, 17)  # manylinux2014, the oldest tag most wheels name now
    extras = image_wheels.image_extras(dockerfile)
    assert extras == ["confluent", "s3"]
    wanted = image_wheels.requirements(project, extras)
    assert {"confluent-kafka>=2.16", "boto3>=1.34", *project["dependencies"]} == set(wanted)


def test_an_unknown_base_image_is_refused_rather_than_guessed():
    with pytest.raises(SystemExit, match="glibc"):
        image_wheels.base_image("ARG PYTHON_IMAGE=python:3.11-slim\n")
    with pytest.raises(SystemExit, match="Debian sid"):
        image_wheels.base_image("ARG PYTHON_IMAGE=python:3.11-slim-sid\n")


@pytest.mark.network
def test_every_runtime_dependency_has_a_wheel_for_both_architectures(capsys):
    assert image_wheels.main() == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count(" wheels") == 2


@pytest.mark.network
def test_a_dependency_without_a_wheel_fails_the_check():
    code, errors, chosen = image_wheels.resolve(["PyYAML==5.4.1"], "3.11", "aarch64", (2, 41))  # no cp311 wheels
    assert code != 0 and "PyYAML==5.4.1" in errors and chosen == []
