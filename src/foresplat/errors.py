"""User-facing errors and the CLI's one error path.

Every command runs through `run_command` (called by `foresplat.cli.main`): a user error (bad file,
bad value, bad output path, too much memory, a usage error) prints ONE line

    foresplat COMMAND: error: <message naming the file / option and what was expected>

to stderr and exits with status 2; a traceback is shown only with `foresplat --debug COMMAND ...`
(or FORESPLAT_DEBUG=1). Ctrl-C exits 130 with one line. Commands therefore need no try/except of
their own: they raise `UserError` (or FileNotFoundError / a ValueError subclass) naming the input.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["UserError", "OutputPathError", "MemoryLimitError", "UsageError", "TrainingInterrupted",
           "debug_enabled", "one_line", "run_command", "USER_ERRORS"]


class UserError(ValueError):
    """Bad input from the user (a file, an option value, an output path): one line, exit 2."""


class OutputPathError(UserError):
    """An output path that must not be written (not a regular file, no writable folder, a collision)."""


class MemoryLimitError(UserError):
    """The estimated memory of a request exceeds the limit (see foresplat.limits)."""


class UsageError(UserError):
    """A command-line usage error (unknown option, unparsable value, missing argument)."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint (the CLI exits 130)."""

    def __init__(self, message: str, checkpoint=None):
        super().__init__(message)
        self.checkpoint = checkpoint


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, MemoryError, FloatingPointError)
"""Exceptions the CLI reports in one line with exit status 2 (ValueError covers UserError,
CheckpointError, DataFormatError, JSON and Unicode errors; OSError covers FileNotFoundError,
PermissionError, IsADirectoryError, a full disk; FloatingPointError: a diverged refinement)."""


def debug_enabled() -> bool:
    """True when FORESPLAT_DEBUG is set to a non-empty value other than 0/false/no."""
    return os.environ.get("FORESPLAT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (newlines and runs of blanks collapsed), never empty."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    if isinstance(exc, MemoryError):
        text = ("out of memory" + (f" ({text})" if text else "")
                + "; reduce the sizes or raise the limit with --max-memory-gb")
    if isinstance(exc, KeyError):  # str(KeyError) is the quoted key
        text = f"missing key {text}"
    return text or type(exc).__name__


def _is_cpu_oom(exc: BaseException) -> bool:
    """torch's CPU allocator failure (a RuntimeError) or a CUDA OutOfMemoryError."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc)
                                              or "not enough memory" in str(exc))


def _tyro_message(event) -> str:
    """One line for a tyro parse-error event (tyro's private, version-dependent hook payload)."""
    def name_of(arg) -> str:
        try:
            low = arg.lowered
            return str(low.metavar) if not low.name_or_flags else "/".join(low.name_or_flags)
        except AttributeError:
            return "argument"

    kind = type(event).__name__
    if kind == "InstantiationFailure":
        where = name_of(event.argument) if getattr(event, "argument", None) is not None else None
        message = (str(event.message).strip().splitlines() or [""])[0]  # the rest lists per-type attempts
        return f"{where}: {message}" if where else message
    if kind == "BadValue":
        what = "too few values" if event.reason == "too_few_values" else f"unexpected value {event.offending_value!r}"
        return f"{name_of(event.argument)}: {what}"
    if kind == "InvalidChoice":
        return f"{name_of(event.argument)}: invalid choice {event.value!r} (choose from {', '.join(event.choices)})"
    if kind == "UnrecognizedArgs":
        return f"unrecognized arguments: {' '.join(event.tokens)}"
    if kind == "MissingArgs":
        names = [name_of(a.arg) for a in event.missing_arguments]
        return f"missing required argument(s): {', '.join(names)}"
    if kind == "MutexConflict":
        return f"{event.first_token} and {event.second_token} cannot be given together"
    return f"invalid command line ({kind})"


@contextmanager
def _usage_errors_raise() -> Iterator[None]:
    """Inside the block, argparse and tyro usage errors raise UsageError instead of printing a
    multi-line usage and exiting (tyro: through its parse-error hook when this tyro has one)."""
    original = argparse.ArgumentParser.error

    def error(self, message):  # noqa: ARG001 (argparse's signature)
        raise UsageError(message)

    argparse.ArgumentParser.error = error
    try:
        hook_ctx = None
        try:
            from tyro import _errors as tyro_errors  # private API: used only when present

            def hook(event):
                raise UsageError(_tyro_message(event))

            hook_ctx = tyro_errors.on_parse_error(hook)
        except (ImportError, AttributeError):
            hook_ctx = None
        if hook_ctx is None:
            yield
        else:
            with hook_ctx:
                yield
    finally:
        argparse.ArgumentParser.error = original


def run_command(name: str, fn: Callable[[], int | None]) -> int:
    """Runs `fn()` (a command's main) with the CLI's error policy; returns the exit status.

    User errors (USER_ERRORS, usage errors, a CPU out-of-memory, torch's LinAlgError from a
    singular input matrix) -> one line on stderr, 2;
    KeyboardInterrupt -> one line, 130; TrainingInterrupted -> its message, 130. With
    debug_enabled() the exception propagates (full traceback).
    """
    prefix = f"foresplat {name}: error: "
    try:
        with _usage_errors_raise():
            return int(fn() or 0)
    except TrainingInterrupted as exc:
        print(f"foresplat {name}: {one_line(exc)}", file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        print(f"foresplat {name}: interrupted", file=sys.stderr, flush=True)
        return 130
    except USER_ERRORS as exc:
        if debug_enabled():
            raise
        print(prefix + one_line(exc), file=sys.stderr, flush=True)
        return 2
    except RuntimeError as exc:
        if debug_enabled():
            raise
        if _is_cpu_oom(exc):
            print(prefix + "out of memory: " + one_line(exc).split(". ")[0]
                  + "; reduce the sizes (or check --max-memory-gb)", file=sys.stderr, flush=True)
            return 2
        if type(exc).__name__ in ("LinAlgError", "_LinAlgError"):  # a singular / non-finite matrix read from the input
            print(prefix + "a matrix of the input cannot be inverted or decomposed (singular or non-finite "
                  f"camera pose or intrinsics?): {one_line(exc).split(': ', 1)[-1]}", file=sys.stderr, flush=True)
            return 2
        raise
