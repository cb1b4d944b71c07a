"""Install carried wheels into a folder, skipping every distribution the running Python already has.

A lent GPU machine has torch, transformers, numpy and their kin, and no network; claimkit's
other needs (sae-lens and its chain, bandit, gguf) travel as wheels. Installing a wheel of
something the machine already has would shadow its own build (a numpy that torch was not
built against), so only missing distributions are installed, with --no-deps and --no-index.

    python bench/device_wheels.py .whl --target .device-site      # then PYTHONPATH=.device-site:...
    python bench/device_wheels.py .whl --missing                  # only say which wheels would install
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def distribution(wheel: Path) -> str:
    """The distribution name a wheel's file name starts with (PEP 427), normalised."""
    return wheel.name.split("-")[0].lower().replace("_", "-")


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder of .whl files")
    parser.add_argument("--target", type=Path, help="folder to install into (put it first on PYTHONPATH)")
    parser.add_argument("--missing", action="store_true", help="only list the wheels that would be installed")
    args = parser.parse_args()
    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"{args.wheels}: no .whl files")
    wanted = []
    for wheel in wheels:
        have = installed(distribution(wheel))
        print(f"{'have ' + have if have else 'install':>16}  {wheel.name}")
        if have is None:
            wanted.append(wheel)
    if args.missing or not wanted:
        return
    if args.target is None:
        raise SystemExit("--target is required to install")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(args.target), *map(str, wanted)]
    subprocess.run(command, check=True)
    print(f"installed {len(wanted)} of {len(wheels)} wheels into {args.target}")


if __name__ == "__main__":
    main()
