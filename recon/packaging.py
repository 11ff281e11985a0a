"""Build what Spark's driver and executors need from this project, into dist/.

    python -m recon.packaging [--dist dist] [--no-wheel] [--env]

- ``dist/recon_pipeline-{version}-py3-none-any.whl``: the project as a wheel
  (``pip wheel --no-deps``), to install on the machine that runs the driver
  (the cron host, an edge node, or a container image);
- ``dist/recon-pyfiles-{version}.zip``: the project's packages for
  ``spark-submit --py-files``. The job uses only Spark SQL expressions, so
  executors import nothing of ours today; the zip is what makes a driver
  started *by the cluster* (``--deploy-mode cluster`` on YARN/Kubernetes, where
  nothing of ours is installed) able to import ``recon``, and keeps working
  if a Python UDF ever appears. Its third-party dependencies (pyarrow,
  requests, paramiko, …) must still be installed in the cluster's Python (or
  shipped with ``--archives`` as a packed venv);
- ``dist/recon-env-{python}-{digest}.tar.gz`` (``--env``): that packed venv, for a
  driver the cluster starts (YARN cluster deploy mode): the project's
  dependencies except pyspark (spark-submit ships its own ``pyspark.zip`` and
  py4j to the driver) and pandas (the job never imports it), packed by
  ``venv-pack``. A venv links to its base interpreter, so every node needs
  that Python at the same path (``python3.11`` from the same install); the
  name carries the Python version and a digest of the dependency list, so
  the same dependencies give the same file name.

The zip is reproducible: members sorted, fixed timestamps, no ``__pycache__``,
so the same sources give the same bytes (and the same checksum in the run
manifest).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The importable top-level packages; reports/ only once it exists.
PACKAGES = ("recon", "core", "schemas", "connectors", "normalizers", "jobs", "reports")
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)   # zip cannot store times before 1980; any fixed time makes bytes stable
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".swp")


def project_version(project_dir: Path = PROJECT_DIR) -> str:
    """The version in pyproject.toml."""
    with (project_dir / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def build_pyfiles_zip(dist: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """Zip the project's packages (sources and package data) for ``--py-files``; returns the zip's path."""
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"recon-pyfiles-{project_version(project_dir)}.zip"
    members = []
    for package in PACKAGES:
        folder = project_dir / package
        if not (folder / "__init__.py").is_file():
            continue
        for path in folder.rglob("*"):
            rel = path.relative_to(project_dir)
            if path.is_file() and not _SKIP_DIRS.intersection(rel.parts) and not path.name.endswith(_SKIP_SUFFIXES):
                members.append((rel.as_posix(), path))
    partial = target.with_name(target.name + ".part")   # never leave a half-written zip under the final name
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    partial.replace(target)
    return target


def build_wheel(dist: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """``pip wheel --no-deps -w dist .``; returns the wheel's path."""
    dist.mkdir(parents=True, exist_ok=True)
    scratch = project_dir / "build"
    existed = scratch.exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist),
                        str(project_dir)], check=True, cwd=project_dir)
    finally:
        if not existed:   # setuptools leaves build/ in the source tree; a stale one can leak old files into wheels
            shutil.rmtree(scratch, ignore_errors=True)
    name = f"recon_pipeline-{project_version(project_dir)}-py3-none-any.whl"
    wheel = dist / name
    if not wheel.is_file():
        raise FileNotFoundError(f"pip wheel did not produce {wheel}")
    return wheel


# Dependencies the cluster-mode driver does not need: Spark ships pyspark (and py4j) to it; pandas is declared only
# to keep pyspark from warning about pandas 3, and no module of ours imports it.
_NOT_IN_ENV = ("pyspark", "pandas")


def env_requirements(project_dir: Path = PROJECT_DIR) -> list[str]:
    """The project's dependencies a cluster-mode driver needs (pyproject's list without ``_NOT_IN_ENV``)."""
    import re

    deps = tomllib.loads((project_dir / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    return [d for d in deps if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() not in _NOT_IN_ENV]


def env_name(project_dir: Path = PROJECT_DIR) -> str:
    import hashlib

    digest = hashlib.sha256("\n".join(env_requirements(project_dir)).encode()).hexdigest()[:12]
    return f"recon-env-py{sys.version_info.major}.{sys.version_info.minor}-{digest}.tar.gz"


def build_env(dist: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """A packed venv of ``env_requirements()`` for ``--archives``; kept when one of the same name exists."""
    target = dist / env_name(project_dir)
    if target.is_file():
        return target
    try:
        import venv_pack
    except ImportError:
        raise SystemExit("--env needs venv-pack: pip install 'recon-pipeline[cluster]' (or pip install venv-pack)")
    dist.mkdir(parents=True, exist_ok=True)
    scratch = dist / f".env-build-{target.stem}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(scratch)], check=True)
        subprocess.run([str(scratch / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *env_requirements(project_dir)], check=True)
        partial = target.with_name(target.name + ".part")
        venv_pack.pack(prefix=str(scratch), output=str(partial), format="tar.gz", force=True, verbose=False,
                       compress_level=1)
        partial.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m recon.packaging`` (``make package``)."""
    parser = argparse.ArgumentParser(prog="python -m recon.packaging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=PROJECT_DIR / "dist", help="output folder (default: dist/)")
    parser.add_argument("--no-wheel", action="store_true", help="only the --py-files zip")
    parser.add_argument("--env", action="store_true",
                        help="also the packed driver environment for YARN cluster mode (needs venv-pack)")
    args = parser.parse_args(argv)
    built = [build_pyfiles_zip(args.dist)]
    if not args.no_wheel:
        built.append(build_wheel(args.dist))
    if args.env:
        built.append(build_env(args.dist))
    for path in built:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
