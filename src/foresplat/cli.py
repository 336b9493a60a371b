"""The `foresplat` command line: a thin dispatcher over `foresplat.commands.<name>`.

Each subcommand lives in its own module exposing `main(argv: list[str]) -> int`, imported only when
it is used (so `foresplat --help` never imports torch extensions or plotting).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": "train a base model, fine-tune with vanilla and MetaGrad, evaluate (no data needed)",
    "train": "train a predictor (rules: vanilla, metagrad, reptile, dense, unrolled)",
    "predict": "predict Gaussians for a scene from a checkpoint and write a .ply",
    "refine": "refine Gaussians on a scene's context views and write a .ply + metrics",
    "eval": "quality versus refinement steps and wall-clock for checkpoints and baselines",
    "render": "render a .ply or a built-in scene to images",
    "data": "inspect a scene folder (format, views, intrinsics, contact sheet)",
    "bench": "run a benchmark script from benchmarks/",
    "view": "browser viewer (viser) of a .ply with the scene's cameras and images",
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: foresplat COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {c.ljust(width)}  {h}" for c, h in COMMANDS.items()]
    lines += ["", "Run `foresplat COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `foresplat` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from foresplat import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"foresplat: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from foresplat._env import configure_caches

    configure_caches()
    module = importlib.import_module(f"foresplat.commands.{name}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
