"""A study table over finished claim runs (`foresplat experiment study RUN ...`).

One row per run: the options it changed against its preset (as `foresplat experiment claim` flags,
from the config stored in RUN/results/<set>/claim.json), its scenes x seeds, the treatment - vanilla
paired difference at every evaluated step with its CI, the steps to reach vanilla's final PSNR, and the
two required claims (final gain, steps to match). The numbers are read, never recomputed: a row shows
what that run's claim.md says, so a study table is rebuilt from its runs with one command.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from foresplat.evaluate.results import json_safe
from foresplat.experiment.config import claim_preset
from foresplat.experiment.report import format_interval, format_steps
from foresplat.experiment.stats import Interval

FLAG_NAMES = {"base": "base_ckpt", "real_scenes": "real"}
"""ClaimConfig fields whose `foresplat experiment claim` option has another name."""
NOT_OPTIONS = ("name",)
"""Fields that are not a changed setting (the preset is its own column)."""


@dataclass
class StudyRow:
    """One finished claim run, as a row of the study table (PSNR differences in dB)."""

    run: str
    preset: str
    options: list[str]
    """The flags that differ from the preset, e.g. ["--lam 0", "--eval-scenes 32"]."""
    scenes: int
    seeds: int
    treatment: str
    steps: list[int]
    diff: list[Interval]
    """Per step: treatment - vanilla with its CI."""
    match: dict | None
    """{"estimate", "low", "high"}: steps to reach vanilla's final PSNR (None = never)."""
    gain_holds: bool | None
    match_holds: bool | None
    control_from: list[str] = field(default_factory=list)


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_flag_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def changed_options(config: dict) -> list[str]:
    """The `foresplat experiment claim` flags that turn preset config["name"] into `config` (a stored
    ClaimConfig as JSON); fields the preset lacks are ignored, fields that are no CLI option show as
    name=value."""
    from foresplat.commands.experiment import ClaimCommand

    options = {f.name for f in fields(ClaimCommand)}
    preset = json_safe(asdict(claim_preset(config["name"])))
    out = []
    for key, default in preset.items():
        if key in NOT_OPTIONS or key not in config or json_safe(config[key]) == default:
            continue
        option = FLAG_NAMES.get(key, key)
        value = _flag_value(config[key])
        out.append(f"--{option.replace('_', '-')} {value}" if option in options else f"{key}={value}")
    return out


def load_row(run: str | Path, which: str = "synthetic") -> StudyRow:
    """The study row of claim run folder `run` from its RUN/results/<which>/claim.json."""
    run = Path(run)
    path = run / "results" / which / "claim.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        record = json.loads((run / "claim.json").read_text(encoding="utf-8"))
        config = doc["config"]
        holds = [c.get("holds") for c in doc["claims"]] + [None] * 3  # report.claims_of: design, gain, match[, start]
        return StudyRow(str(run), config["name"], changed_options(config), len(doc["scenes"]), len(doc["seeds"]),
                        config.get("treatment", "metagrad"), [int(k) for k in doc["steps"]],
                        [Interval(**d) for d in doc["diff_steps"]],
                        doc.get("steps_to_match"), holds[1], holds[2], list(record.get("control_from", [])))
    except FileNotFoundError as exc:
        missing = os.path.relpath(exc.filename, run) if exc.filename else "claim.json"
        raise FileNotFoundError(f"experiment study: {run}: no {missing} there (not a claim run, or no {which} "
                                f"results yet: `foresplat experiment claim --report-only --out {run}` analyses a "
                                "running one)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"experiment study: {path}: not a claim result ({type(exc).__name__}: {exc})") from None


def _match(m: dict | None) -> str:
    if m is None:
        return "-"
    return f"{format_steps(m.get('estimate'))} [{format_steps(m.get('low'))}, {format_steps(m.get('high'))}]"


def _holds(x: bool | None) -> str:
    return {True: "holds", False: "fails", None: "not checked"}[x]


def study_markdown(rows: list[StudyRow]) -> str:
    """The study table: one row per run, the steps of the first run as columns (a run without a step
    shows "-" there)."""
    steps = rows[0].steps if rows else []
    head = ["run", "options (against the preset)", "scenes x seeds"] + [f"at {k}" for k in steps] + [
        "steps to vanilla's final PSNR", "+gain claim", "speed claim"]
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        opts = " ".join(f"`{o}`" for o in r.options) or "(the preset)"
        if r.control_from:
            opts += " (c: vanilla arm from " + ", ".join(r.control_from) + ")"
        cells = [format_interval(r.diff[r.steps.index(k)]) if k in r.steps else "-" for k in steps]
        out.append("| " + " | ".join([r.run, opts, f"{r.scenes} x {r.seeds}", *cells, _match(r.match),
                                     _holds(r.gain_holds), _holds(r.match_holds)]) + " |")
    return "\n".join(out) + "\n"


def study_csv(rows: list[StudyRow]) -> str:
    """Long format: one line per (run, step) with the difference and its CI, plus the run's columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "preset", "options", "treatment", "scenes", "seeds", "step", "diff", "low", "high",
                "steps_to_match", "gain_claim", "speed_claim"])
    for r in rows:
        for k, d in zip(r.steps, r.diff):
            w.writerow([r.run, r.preset, " ".join(r.options), r.treatment, r.scenes, r.seeds, k,
                        f"{d.mean:.6f}", f"{d.low:.6f}", f"{d.high:.6f}",
                        format_steps(None if r.match is None else r.match.get("estimate")),
                        _holds(r.gain_holds), _holds(r.match_holds)])
    return buf.getvalue()
