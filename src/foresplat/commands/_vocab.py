"""One command-line vocabulary across subcommands, and the old spellings accepted for one release.

Every subcommand uses the same names for the same things:
    --ckpt PATH     a predictor checkpoint (the <path>.safetensors/.json pair, suffix optional)
    --out PATH      the output file or folder
    --split RULE    how a scene's views are split into context / target views (default: even)
    SCENE / --scene a scene folder or file in any format load_scene reads, or synthetic:SEED
Old spellings (listed per command in RENAMED) still work until the next release: they are rewritten
to the new name with a one-line deprecation message on stderr.
"""

from __future__ import annotations

import sys

SPLIT_DEFAULT = "even"
"""The default view split of every command (predict, refine, eval): the same held-out views everywhere."""

RENAMED: dict[str, dict[str, str]] = {
    "eval": {"--checkpoints": "--ckpt"},
    "train": {"--init-checkpoint": "--ckpt", "--out-dir": "--out"},
    "predict": {"--split-rule": "--split"},
    "refine": {"--split-rule": "--split"},
    "render": {"--synthetic-seed": "--scene synthetic:"},
    "data": {"--sheet": "--out"},
}
"""command -> {old option: new option}; a new option ending in ':' takes the old value as a suffix."""


def deprecation(prog: str, old: str, new: str) -> str:
    """The message printed when an old spelling is used."""
    return (f"{prog}: warning: {old} is deprecated and will be removed in the next release; "
            f"use {new}{'SEED' if new.endswith(':') else ''}")


def modernize(command: str, argv: list[str], *, stream=None) -> list[str]:
    """argv with the old option spellings of `command` (RENAMED) replaced by the new ones, printing a
    DeprecationWarning-style line to stderr for each one used. Stops at a bare `--`."""
    renames = RENAMED.get(command, {})
    if not renames:
        return list(argv)
    stream = sys.stderr if stream is None else stream
    prog = f"foresplat {command}"
    out: list[str] = []
    warned: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        name, eq, value = arg.partition("=")
        new = renames.get(name)
        if new is None:
            out.append(arg)
            i += 1
            continue
        if name not in warned:
            print(deprecation(prog, name, new), file=stream)
            warned.add(name)
        if new.endswith(":"):  # --synthetic-seed 3 -> --scene synthetic:3
            opt, _, prefix = new.partition(" ")
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            out += [opt, prefix + value]
        else:
            out.append(new + eq + value if eq else new)
        i += 1
    return out
