"""The `foresplat` command line: a thin dispatcher over `foresplat.commands.<name>`.

Each subcommand lives in its own module exposing `main(argv: list[str]) -> int`, imported only when
it is used (so `foresplat --help` never imports torch extensions or plotting).

Global options (before or after COMMAND): `--debug` (show tracebacks; also FORESPLAT_DEBUG=1) and
`--max-memory-gb GB` (the memory limit of the size checks, foresplat.limits; also
FORESPLAT_MAX_MEMORY_GB). Errors go through foresplat.errors.run_command: one line, exit status 2.
"""

from __future__ import annotations

import importlib
import os
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
    "export": "export a predictor checkpoint to ONNX (+ int8), checked against PyTorch",
    "distill": "train a small student predictor from a teacher (+ vanilla / MetaGrad head fine-tunes)",
    "view": "browser viewer (viser) of a .ply with the scene's cameras and images",
    "experiment": "reproduction experiments: `experiment claim` (MetaGrad vs vanilla with confidence intervals)",
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: foresplat COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {c.ljust(width)}  {h}" for c, h in COMMANDS.items()]
    lines += ["", "global options: --debug (tracebacks on errors), --max-memory-gb GB (memory limit of the",
              "size checks; default: half the physical memory)", "",
              "Run `foresplat COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def _global_options(argv: list[str]) -> list[str]:
    """Removes --debug and --max-memory-gb[=]GB (anywhere before a `--`) from argv, applying them
    through the environment (FORESPLAT_DEBUG, FORESPLAT_MAX_MEMORY_GB) so that every command and
    its child processes see them. Raises UsageError for a bad --max-memory-gb value."""
    from foresplat.errors import UsageError
    from foresplat.limits import parse_gb

    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        if a == "--debug":
            os.environ["FORESPLAT_DEBUG"] = "1"
        elif a == "--max-memory-gb" or a.startswith("--max-memory-gb="):
            if "=" in a:
                value = a.split("=", 1)[1]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError("--max-memory-gb: expected a number of GB")
            os.environ["FORESPLAT_MAX_MEMORY_GB"] = repr(parse_gb(value, "--max-memory-gb", UsageError))
        else:
            rest.append(a)
        i += 1
    return rest


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `foresplat` console script."""
    from foresplat.errors import UserError, one_line, run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _global_options(argv)
    except UserError as e:
        print(f"foresplat: error: {one_line(e)}", file=sys.stderr)
        return 2
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
    return run_command(name, lambda: importlib.import_module(f"foresplat.commands.{name}").main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
