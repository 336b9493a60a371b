"""`train(config) -> Path`: the outer training loop, one process or one torchrun rank (same code).

Per iteration: B scenes sampled as a pure function of (seed, iteration, rank) -> the predictor
predicts G0 from their context views -> the training rule (foresplat.meta) turns each G0 into a
surrogate loss -> backward (DDP averages gradients over ranks) -> clip -> AdamW with warm-up +
cosine. Rank 0 writes config.yaml, metrics.jsonl, checkpoints/step_*, model.* and summary.json.

SIGINT (Ctrl-C) / SIGTERM: the current iteration finishes, a checkpoint of it is saved, and
TrainingInterrupted is raised (the CLI exits 130); `resume="auto"` continues exactly from there
(a second Ctrl-C aborts at once). `resume="auto"` takes the newest checkpoint that loads: a
corrupt or incomplete latest one is reported and skipped.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from foresplat.data.scene import SceneSplit
from foresplat.io import atomic_write_json, atomic_write_text
from foresplat.meta import RuleConfig, TrainingRule, build_rule
from foresplat.models import Predictor
from foresplat.models.dictconfig import config_to_dict
from foresplat.train.config import TrainConfig
from foresplat.train.data import collate, mix_seed, sample_split, validation_splits
from foresplat.train.distributed import (DistInfo, gather_objects, setup_distributed, teardown_distributed,
                                         weights_digest)
from foresplat.train.logger import MetricsLogger
from foresplat.train.schedule import lr_at
from foresplat.errors import TrainingInterrupted
from foresplat.train.signals import StopOnSignal
from foresplat.train.state import (checkpoint_path, list_checkpoints, load_latest_valid_checkpoint,
                                   load_training_checkpoint, prune_checkpoints, resolve_resume,
                                   save_training_checkpoint)
from foresplat.train.validation import heldout_metrics


def rule_config(config: TrainConfig) -> RuleConfig:
    """config.rule with TrainConfig.backend applied to its renders and its inner refiner."""
    if config.backend == "auto":
        return config.rule
    return replace(config.rule, backend=config.backend, refine=replace(config.rule.refine, backend=config.backend))


def build_model(config: TrainConfig) -> tuple[Predictor, TrainConfig]:
    """The predictor (seeded init, or init_checkpoint's weights) and the config with its model resolved."""
    torch.manual_seed(config.seed)
    if config.init_checkpoint:
        model = Predictor.from_checkpoint(config.init_checkpoint)
        config = replace(config, model=model.config)
    else:
        model = Predictor(config.model)
    if not config.train_backbone:
        model.freeze_backbone()
    if config.head_outputs:
        model.head.restrict_training(tuple(config.head_outputs))
    return model, config


def build_optimizer(model: Predictor, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on weight matrices/kernels only (and not on the
    head's last layer when its training is restricted to some outputs: decay would move the others)."""
    masked = {id(p) for p in model.head.out.parameters()} if model.head.restricted_to else set()
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2 and id(p) not in masked]
    other = [p for p in model.parameters() if p.requires_grad and (p.dim() < 2 or id(p) in masked)]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def _to(split: SceneSplit, device: torch.device) -> SceneSplit:
    return replace(split, context=split.context.to(device), target=split.target.to(device))


def run_rule(rule: TrainingRule, g0s: list, splits: list[SceneSplit], gens: list[torch.Generator],
             workers: int = 1) -> list:
    """rule(g0s[b], splits[b], gens[b]) for every scene b -> B x RuleOutput, in order.

    workers > 1: the calls run in that many threads (torch releases the GIL in its kernels). Each call
    draws only from its own generator and builds its own part of the graph, so the outputs are the
    same as one after the other (tests/test_train_rule_workers.py checks them bit for bit)."""
    estimate = getattr(rule, "peak_bytes", None)  # rules whose memory grows with the scene (unrolled)
    if estimate is not None:
        from foresplat.limits import check_memory

        per_call = sorted((estimate(g, s) for g, s in zip(g0s, splits)), reverse=True)
        at_once = max(1, min(workers, len(g0s)))
        check_memory(sum(per_call[:at_once]), f"rule {type(rule).__name__} on {at_once} scene(s) at once "
                     f"({g0s[0].num} Gaussians, {tuple(splits[0].context.images.shape[-3:-1])} px)")
    if workers <= 1 or len(g0s) <= 1:
        return [rule(g, s, gen) for g, s, gen in zip(g0s, splits, gens)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(g0s))) as pool:
        return list(pool.map(rule, g0s, splits, gens))


def train_step(model: torch.nn.Module, rule: TrainingRule, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
               config: TrainConfig, it: int, rank: int, device: torch.device) -> dict[str, float]:
    """One optimizer step on this rank's B scenes of iteration `it`; returns float stats (losses, times, rule logs)."""
    t0 = time.perf_counter()
    splits = [sample_split(config, it, rank, b) for b in range(config.batch_size)]  # B x SceneSplit
    batch = collate(splits).to(device)  # images [B,Vc,H,W,3], viewmats [B,Vc,4,4], Ks [B,Vc,3,3], near/far [B]
    splits = [_to(s, device) for s in splits]
    lr = lr_at(it, config.lr, config.iterations, config.warmup, config.lr_min_ratio)
    for group in opt.param_groups:
        group["lr"] = lr
    t1 = time.perf_counter()
    g0 = model(*batch.args())  # Gaussians [B, N], N = Vc * H/s * W/s, attached to the trainable params
    t2 = time.perf_counter()
    gens = [torch.Generator().manual_seed(mix_seed(config.seed, it, rank, b, 3)) for b in range(config.batch_size)]
    outs = run_rule(rule, [g0[b] for b in range(config.batch_size)], splits, gens, config.rule_workers)
    loss = torch.stack([o.loss for o in outs]).mean()  # scalar: mean surrogate loss over the B scenes
    if not bool(torch.isfinite(loss.detach())):
        raise FloatingPointError(f"iteration {it}: the rule loss is {float(loss.detach())} "
                                 f"(scenes {[s.context.name for s in splits]})")
    t3 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()  # the rule's gradient on the trainable params; DDP averages it over ranks
    gnorm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
    opt.step()
    t4 = time.perf_counter()
    stats = {"loss": float(loss.detach()), "grad_norm": float(gnorm), "lr": lr, "time_data": t1 - t0,
             "time_forward": t2 - t1, "time_rule": t3 - t2, "time_backward_step": t4 - t3}
    for o in outs:
        for k, v in o.logs.items():
            stats[f"rule/{k}"] = stats.get(f"rule/{k}", 0.0) + float(v) / len(outs)
    stats["_scenes"] = [s.context.name for s in splits]
    return stats


class _Meter:
    """Averages step stats between two log lines."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, stats: dict) -> None:
        for k, v in stats.items():
            if isinstance(v, float):
                self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def pop(self) -> dict[str, float]:
        mean = {k: v / max(self.n, 1) for k, v in self.sums.items()}
        self.sums, self.n = {}, 0
        return mean


def train(config: TrainConfig, rule: TrainingRule | None = None) -> Path:
    """Runs (or resumes) training; returns the final model checkpoint stem (out_dir/model).

    `rule` replaces the rule built from config.rule (e.g. foresplat.train.distill's DistillRule)."""
    config.validate()
    created = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = setup_distributed(config.device)
    try:
        return _train(config, info, rule)
    finally:
        if created:
            teardown_distributed()


def _train(config: TrainConfig, info: DistInfo, rule: TrainingRule | None = None) -> Path:
    from foresplat.io.outputs import check_output_dir
    from foresplat.limits import check_memory, train_bytes

    out = check_output_dir(config.out_dir, option="--out")
    views = config.num_context + config.num_target
    check_memory(train_bytes(config.batch_size, views, config.width, config.height),
                 f"training with batches of {config.batch_size} x {views} views at {config.width}x{config.height} px")
    model, config = build_model(config)
    if config.width % model.divisor or config.height % model.divisor:
        raise ValueError(f"TrainConfig.width/height: {config.width}x{config.height} must be multiples of "
                         f"{model.divisor} for backbone {config.model.backbone.name!r}")
    model.to(info.device).train()
    opt = build_optimizer(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    rule = rule if rule is not None else build_rule(rule_config(config))

    if config.resume == "auto":  # the newest checkpoint that loads (a corrupt latest one is skipped)
        resume, meta, skipped = load_latest_valid_checkpoint(out, model, opt)
        for msg in skipped:
            print(f"--resume auto: skipped an unusable checkpoint: {msg}", file=sys.stderr, flush=True)
        start = int(meta["step"]) if meta is not None else 0
    else:
        resume = resolve_resume(config.resume, out)
        if resume is None and config.resume is None and list_checkpoints(out):
            raise FileExistsError(f"{out} already holds checkpoints of an earlier run: pass resume='auto' "
                                  "(--resume auto) to continue it, or choose another out_dir")
        start = int(load_training_checkpoint(resume, model, opt)["step"]) if resume is not None else 0
    ddp = model
    if info.world_size > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    config_dict = config_to_dict(config)
    logger, val_splits = None, []
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config_dict, sort_keys=False))
        logger = MetricsLogger(out / "metrics.jsonl", resume_from=start if resume is not None else None,
                               tensorboard_dir=out / "tb" if config.tensorboard else None)
        val_splits = validation_splits(config)
    val_first = val_last = None
    if info.is_main and val_splits and start == 0:
        val_first = val_last = heldout_metrics(model.eval(), val_splits, config.backend)
        model.train()
        logger.log({"iteration": 0, **val_first})

    first_scenes: list[str] = []
    t_start, meter = time.perf_counter(), _Meter()
    bar = tqdm(range(start, config.iterations), initial=start, total=config.iterations, desc="train",
               disable=not (info.is_main and config.progress), dynamic_ncols=True)
    saved = start
    with StopOnSignal() as stop:
        for it in bar:
            stats = train_step(ddp, rule, opt, params, config, it, info.rank, info.device)
            first_scenes = first_scenes or stats["_scenes"]
            meter.add(stats)
            step = it + 1
            if step % config.log_interval == 0 or step == config.iterations:
                mean = meter.pop()
                if info.world_size > 1:  # loss averaged over ranks (a collective on every rank)
                    t = torch.tensor([mean["loss"]], dtype=torch.float64, device=info.device)
                    torch.distributed.all_reduce(t)
                    mean["loss"] = float(t) / info.world_size
                if info.is_main:
                    sec = sum(mean[k] for k in ("time_data", "time_forward", "time_rule", "time_backward_step"))
                    mean["lr"] = stats["lr"]
                    logger.log({"iteration": step, **mean, "scenes_per_s": config.batch_size * info.world_size / sec})
                    bar.set_postfix(loss=f"{mean['loss']:.4f}", lr=f"{stats['lr']:.2e}")
            if info.is_main and val_splits and config.val_interval and step % config.val_interval == 0 \
                    and step < config.iterations:
                val_last = heldout_metrics(model.eval(), val_splits, config.backend)
                model.train()
                logger.log({"iteration": step, **val_last})
            if info.is_main and ((config.ckpt_interval and step % config.ckpt_interval == 0) or step == config.iterations):
                save_training_checkpoint(checkpoint_path(out, step), model, opt, step, config_dict, info.world_size)
                prune_checkpoints(out, config.keep_checkpoints)
                saved = step
            if stop.requested(info) and step < config.iterations:
                path = checkpoint_path(out, step)
                if info.is_main and saved != step:
                    save_training_checkpoint(path, model, opt, step, config_dict, info.world_size)
                    prune_checkpoints(out, config.keep_checkpoints)
                bar.close()
                if info.is_main:
                    logger.close()
                raise TrainingInterrupted(f"interrupted by {stop.signal_name} after iteration {step} of "
                                          f"{config.iterations}: saved the checkpoint {path}; continue with "
                                          "--resume auto", path)
    bar.close()
    seconds = time.perf_counter() - t_start

    final = out / "model"
    if info.is_main:
        if val_splits:
            val_last = heldout_metrics(model.eval(), val_splits, config.backend)
            logger.log({"iteration": config.iterations, **val_last})
        model.save(final, step=config.iterations, extra_meta={"train_config": config_dict})
    digests = gather_objects({"rank": info.rank, "weights_sha256": weights_digest(model), "first_scenes": first_scenes},
                             info)
    if info.is_main:
        ran = config.iterations - start
        atomic_write_json(out / "summary.json", {
            "final_checkpoint": str(final), "iterations": config.iterations, "resumed_from": start if resume else None,
            "world_size": info.world_size, "seconds": seconds, "iterations_per_s": ran / seconds if ran else None,
            "num_parameters": model.num_parameters(), "trainable_parameters": model.num_parameters(True),
            "val_first": val_first, "val_last": val_last, "ranks": digests,
            "ranks_in_sync": len({d["weights_sha256"] for d in digests}) == 1})
        logger.close()
    return final
