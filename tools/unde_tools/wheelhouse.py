"""Build the offline wheelhouse of one app for a target Python (``make``-free; run by roles/unde_app).

The app hosts never reach PyPI: the controller builds every wheel an app needs, for the host's
CPython version, and the role copies them and installs with ``pip --no-index``. Steps:

1. ``uv export --frozen --package <dist> --no-dev`` gives the locked third-party pins (the lock is
   universal); each line's environment marker is evaluated for the target (CPython X.Y on
   linux x86_64) and lines that don't apply are dropped;
2. ``pip download --no-deps --only-binary=:all:`` fetches the wheel of each pin for that target
   (manylinux / abi3 / pure); a pin with no wheel is built with ``pip wheel --no-deps`` (only pure
   Python sdists can be built this way, and that is checked);
3. ``uv build --wheel`` builds the workspace packages the app needs (unde-common + the app);
   hatchling builds are reproducible, so an unchanged tree gives byte-identical wheels;
4. ``requirements.lock`` lists ``name==version`` of everything, and ``wheelset.sha256`` is a digest
   of the wheel files, the role's "what is installed" marker.

Output: ``<out>/<app>-cp<XY>/`` (wheels, requirements.lock, wheelset.sha256, and all of them in one
deterministic ``wheelhouse.tar``, the file the role copies); prints one JSON line.
Usage: ``python -m unde_tools.wheelhouse --app persona_agent --python 3.13 --out .cache/wheelhouse``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[2]
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


class WheelhouseError(RuntimeError):
    """A wheelhouse could not be built; the message names the app and the package."""


def _run(args: list[str], *, what: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        command = " ".join(args)
        raise WheelhouseError(f"{what} failed (exit {proc.returncode}): {command}\n{proc.stderr[-4000:]}")
    return proc.stdout


def target_environment(python: str) -> dict[str, str]:
    """Marker environment of CPython ``python`` (``3.13``) on linux x86_64."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


def workspace_packages() -> dict[str, Path]:
    """Distribution name (canonical) → directory of every workspace member under apps/."""
    members: dict[str, Path] = {}
    for pyproject in sorted((REPO / "apps").glob("*/pyproject.toml")):
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        members[canonicalize_name(name)] = pyproject.parent
    return members


def locked_pins(dist: str, python: str) -> tuple[list[str], list[str]]:
    """(third-party ``name==version`` pins, workspace distributions) the app needs on ``python``."""
    out = _run(
        [
            "uv",
            "export",
            "--frozen",
            "--package",
            dist,
            "--no-dev",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--format",
            "requirements-txt",
        ],
        what=f"uv export for {dist}",
    )
    env = target_environment(python)
    pins: list[str] = []
    local: list[str] = []
    for raw in out.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e", "./")):
            # a workspace member: "-e ./apps/unde_common" or "./apps/unde_common"
            path = line.removeprefix("-e").strip()
            local.append(path)
            continue
        req = Requirement(line)
        if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
            continue
        if req.url:
            raise WheelhouseError(f"{dist}: pin {line!r} is a URL; only index pins can be downloaded")
        spec = str(req.specifier)
        if not spec.startswith("=="):
            raise WheelhouseError(f"{dist}: pin {line!r} is not exact (uv export gives ==)")
        pins.append(f"{req.name}{spec}")
    return sorted(set(pins)), local


def _download(pins: list[str], dest: Path, python: str) -> None:
    """pip download the wheels of ``pins`` for the target; build pure-Python sdists that have no wheel."""
    abi = f"cp{python.replace('.', '')}"
    base = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--dest", str(dest),
        "--python-version", python, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for platform in PLATFORMS:
        base += ["--platform", platform]
    req_file = dest / ".pins.txt"
    req_file.write_text("\n".join(pins) + "\n")
    proc = subprocess.run([*base, "-r", str(req_file)], capture_output=True, text=True, check=False)
    req_file.unlink()
    if proc.returncode == 0:
        return
    # One by one, to find the pins that have no wheel for the target and build those (pure only).
    for pin in pins:
        one = subprocess.run([*base, pin], capture_output=True, text=True, check=False)
        if one.returncode == 0:
            continue
        built = dest / ".build"
        built.mkdir(exist_ok=True)
        _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(built), pin],
            what=f"building {pin} (no wheel on PyPI for CPython {python})",
        )
        for wheel in built.glob("*.whl"):
            tags = parse_wheel_filename(wheel.name)[3]
            if not all(t.abi == "none" and t.platform == "any" for t in tags):
                raise WheelhouseError(
                    f"{pin} has no wheel for CPython {python} on linux x86_64 and builds a binary wheel "
                    f"({wheel.name}) that would not match the hosts"
                )
            shutil.move(str(wheel), dest / wheel.name)
        shutil.rmtree(built)


def _pack(src: Path, archive: Path) -> None:
    """One deterministic tar of the wheelhouse (sorted names, fixed owner and mtime): the role
    copies a single file, and an unchanged wheelset gives a byte-identical archive."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.iterdir()):
            if path == archive or not path.is_file():
                continue
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 315532800
            info.mode = 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)


def resolve(app: str, python: str) -> tuple[str, list[str], list[str]]:
    """What the wheelhouse of ``app`` (directory under apps/) holds on CPython ``python``:
    (its distribution, the third-party ``name==version`` pins, the canonical names of the workspace
    packages built into it, the app's own included)."""
    if not re.fullmatch(r"3\.\d+", python):
        raise WheelhouseError(f"--python must look like 3.13, got {python!r}")
    app_dir = REPO / "apps" / app
    if not (app_dir / "pyproject.toml").is_file():
        raise WheelhouseError(f"no app {app!r}: apps/{app}/pyproject.toml does not exist")
    dist = tomllib.loads((app_dir / "pyproject.toml").read_text())["project"]["name"]
    pins, local = locked_pins(dist, python)
    members = workspace_packages()
    # uv export names members relative to the repository it ran in ("-e ./apps/unde_common")
    built = {(REPO / p).resolve() for p in local}
    needed = [dist] + [name for name, path in members.items() if path in built]
    return dist, pins, sorted({canonicalize_name(n) for n in needed})


def build(app: str, python: str, out: Path) -> dict[str, object]:
    dist, pins, needed = resolve(app, python)
    target = out / f"{app}-cp{python.replace('.', '')}"
    out.mkdir(parents=True, exist_ok=True)
    with (out / f".{app}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two plays building the same app wait for each other
        work = target.with_name(target.name + ".new")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _download(pins, work, python)
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        for member in needed:
            proc = subprocess.run(
                ["uv", "build", "--wheel", "--quiet", "--package", member, "--out-dir", str(work)],
                capture_output=True, text=True, check=False, cwd=REPO, env=env,
            )  # fmt: skip
            if proc.returncode != 0:
                detail = proc.stderr[-4000:]
                raise WheelhouseError(f"uv build of workspace package {member} failed:\n{detail}")
        for stray in work.glob(".gitignore"):
            stray.unlink()
        wheels = sorted(work.glob("*.whl"))
        names = []
        for wheel in wheels:
            name, version, _, _ = parse_wheel_filename(wheel.name)
            names.append(f"{name}=={version}")
        (work / "requirements.lock").write_text("\n".join(sorted(names)) + "\n")
        digest = hashlib.sha256()
        for wheel in wheels:
            digest.update(wheel.name.encode() + b"\0" + hashlib.sha256(wheel.read_bytes()).digest())
        (work / "wheelset.sha256").write_text(digest.hexdigest() + "\n")
        _pack(work, work / "wheelhouse.tar")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    return {
        "app": app,
        "distribution": dist,
        "python": python,
        "path": str(target),
        "archive": str(target / "wheelhouse.tar"),
        "wheels": len(wheels),
        "wheelset": digest.hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--app", required=True, help="directory name under apps/ (e.g. persona_agent)")
    parser.add_argument("--python", required=True, help="target CPython X.Y (the host's python3)")
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "wheelhouse")
    args = parser.parse_args(argv)
    try:
        result = build(args.app, args.python, args.out.resolve())
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
