"""The dev extra installs where helm-python-sdk has no wheel: its requirement's marker matches exactly the
platforms of the wheels it has (the files of its 0.2.2 release on PyPI), and its sdist, which builds Helm from
Go source, is never chosen."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: The wheels of helm-python-sdk 0.2.2, by the environment they install on (PEP 508 marker variables).
WHEELS = {
    "manylinux_2_28_x86_64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "manylinux_2_28_aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
    "macosx_11_0_arm64": {"sys_platform": "darwin", "platform_machine": "arm64", "platform_release": "20.1.0"},
    "macosx_15_0_x86_64": {"sys_platform": "darwin", "platform_machine": "x86_64", "platform_release": "24.0.0"},
    "win_amd64": {"sys_platform": "win32", "platform_machine": "AMD64"},
}
NO_WHEEL = {
    "linux ppc64le": {"sys_platform": "linux", "platform_machine": "ppc64le"},
    "linux s390x": {"sys_platform": "linux", "platform_machine": "s390x"},
    "linux armv7l": {"sys_platform": "linux", "platform_machine": "armv7l"},
    "macOS 14 x86_64": {"sys_platform": "darwin", "platform_machine": "x86_64", "platform_release": "23.6.0"},
    "windows arm64": {"sys_platform": "win32", "platform_machine": "ARM64"},
    "freebsd amd64": {"sys_platform": "freebsd14", "platform_machine": "amd64"},
}


def _helm_requirement() -> Requirement:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    [requirement] = [Requirement(text) for text in dev if text.startswith("helm-python-sdk")]
    return requirement


@pytest.mark.parametrize("tag", WHEELS)
def test_the_dev_extra_takes_helm_python_sdk_where_it_has_a_wheel(tag):
    assert _helm_requirement().marker.evaluate(WHEELS[tag])


@pytest.mark.parametrize("platform", NO_WHEEL)
def test_the_dev_extra_leaves_it_out_where_it_has_none(platform):
    assert not _helm_requirement().marker.evaluate(NO_WHEEL[platform])
