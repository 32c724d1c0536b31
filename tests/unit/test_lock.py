"""
The lock (requirements.txt, requirements-dev.txt) agrees with what the project
asks for (requirements.in, requirements-dev.in).

A package added to or dropped from an `.in` file, or a bound changed there, without
compiling the lock again fails here, with the README's command to run.
"""

import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RECOMPILE = 'the lock is out of date: run the README\'s command under "The lock"'


def asked(path: Path) -> dict[str, Requirement]:
    """The requirements of an .in file, with those of the .in files it includes."""
    wanted: dict[str, Requirement] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-c"):
            continue
        if line.startswith("-r"):
            wanted.update(asked(path.parent / line.removeprefix("-r").strip()))
            continue
        requirement = Requirement(line)
        wanted[canonicalize_name(requirement.name)] = requirement
    return wanted


class Lock:
    """A compiled file: each package's pinned version, hashes and reasons."""

    def __init__(self, path: Path):
        self.path = path
        self.pins: dict[str, Version] = {}
        self.hashes: dict[str, int] = {}
        self.via: dict[str, set[str]] = {}
        package = None
        for line in path.read_text().splitlines():
            pin = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^ ;\\]+)", line)
            if pin:
                package = canonicalize_name(pin.group(1).split("[")[0])
                self.pins[package] = Version(pin.group(2))
                self.hashes[package] = 0
                self.via[package] = set()
            elif package and "--hash=sha256:" in line:
                self.hashes[package] += 1
            elif package and (reason := re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line)):
                if reason.group(1) != "via":
                    self.via[package].add(reason.group(1).strip())
        self.header = path.read_text().splitlines()[:2]


def locks() -> list[tuple[str, str]]:
    return [
        ("requirements.in", "requirements.txt"),
        ("requirements-dev.in", "requirements-dev.txt"),
    ]


@pytest.mark.parametrize(("source", "compiled"), locks())
def test_every_requirement_asked_for_is_pinned_within_its_bounds(source, compiled):
    lock = Lock(ROOT / compiled)
    environment = default_environment()
    for name, requirement in asked(ROOT / source).items():
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        assert name in lock.pins, (
            f"{name} is in {source} but not {compiled}: {RECOMPILE}"
        )
        assert requirement.specifier.contains(lock.pins[name], prereleases=True), (
            f"{compiled} pins {name}=={lock.pins[name]}, outside {source}'s "
            f"{requirement.specifier}: {RECOMPILE}"
        )


@pytest.mark.parametrize(("source", "compiled"), locks())
def test_every_pin_is_hashed_and_needed(source, compiled):
    lock = Lock(ROOT / compiled)
    assert source in lock.header[1], f"{compiled} was not compiled from {source}"
    assert lock.pins, f"{compiled} pins nothing"
    wanted = asked(ROOT / source)
    for name, count in lock.hashes.items():
        assert count, f"{compiled} has no hash for {name}: {RECOMPILE}"
    for name, reasons in lock.via.items():
        # Needed: asked for, or needed by another pinned package.
        needed = name in wanted or any(
            canonicalize_name(reason) in lock.pins for reason in reasons
        )
        assert needed, f"{compiled} pins {name}, which nothing asks for: {RECOMPILE}"


def test_the_tests_run_on_the_versions_the_app_is_deployed_with():
    app, dev = Lock(ROOT / "requirements.txt"), Lock(ROOT / "requirements-dev.txt")
    for name, version in app.pins.items():
        assert dev.pins.get(name) == version, (
            f"requirements-dev.txt has {name}=={dev.pins.get(name)}, "
            f"requirements.txt {version}: {RECOMPILE}"
        )
