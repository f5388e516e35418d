"""SFRS training in generations (Ge et al., ECCV 2020), resumable at any step.

Reading order of :meth:`SFRSTrainer.run`: for each generation g of the schedule
(``config.train.generations``) -> prepare the teacher's soft labels (g >= 1, read from
``softlabels/gen{g}.h5`` or produced once from ``gen{g-1}_final.pt``) -> initialise the
student (re-initialised or continued) -> epochs of chunks: re-encode the descriptor
cache, mine tuples, optimise -> evaluate on validation each epoch -> after the
generation, evaluate on validation and test and save ``gen{g}_final.pt``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from sfrs import distributed
from sfrs.config import Config, GenerationConfig, to_dict
from sfrs.data.formats import open_dataset
from sfrs.data.geo import Split
from sfrs.errors import ConfigError, SfrsError
from sfrs.retrieval.visual import retrieval_grid
from sfrs.models.network import GeoNet, build_network, network_from_payload
from sfrs.retrieval.evaluate import evaluate
from sfrs.retrieval.extract import extract_descriptors_sharded
from sfrs.training.checkpoint import RunPaths, load_state, save_state, set_rng_state
from sfrs.training.initialise import initialise_network
from sfrs.training.mining import HardNegativeMiner, build_training_set, choose_difficult_positives
from sfrs.training.objective import Objective, compute_descriptors
from sfrs.training.optim import build_optimizer, build_scheduler, build_train_transform
from sfrs.training.report import write_results
from sfrs.training.softlabels import SoftLabels, read_soft_labels, teacher_similarities, write_soft_labels
from sfrs.utils.hashing import fingerprint, model_fingerprint
from sfrs.training.tuples import TupleDataset, assemble_tuples


class TrainingError(SfrsError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def split_fingerprint(split: Split) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in split.database_paths:
        digest.update(Path(path).name.encode())
    for path in split.query_paths:
        digest.update(Path(path).name.encode())
    digest.update(np.ascontiguousarray(split.database_utm).tobytes())
    digest.update(np.ascontiguousarray(split.query_utm).tobytes())
    return digest.hexdigest()[:16]


class SFRSTrainer:
    """Trains the configured schedule into ``output``; see the module docstring."""

    def __init__(
        self,
        config: Config,
        output: Path,
        *,
        device: torch.device = torch.device("cpu"),
        progress: bool = True,
        log: Callable[[str], None] = print,
        stop_after_steps: Optional[int] = None,
    ) -> None:
        self.config = config
        self.paths = RunPaths(Path(output))
        self.device = device
        self.progress = progress
        self.log = log
        # Test hook: stop (as if killed) after this many optimiser steps of this process.
        self.stop_after_steps = stop_after_steps
        self._steps_this_process = 0
        self._writer = None

    # ------------------------------------------------------------------ data & plan
    def load_data(self) -> None:
        data = self.config.data
        self.train_split = open_dataset(data.dataset, "train", data.images_root)
        self.val_split = open_dataset(data.dataset, self.config.train.val_split, data.images_root)
        self.test_split = open_dataset(data.dataset, self.config.train.test_split, data.images_root)
        self.training_set = build_training_set(
            self.train_split, data.train_positive_radius, data.eval_positive_radius
        )
        self.data_fingerprint = split_fingerprint(self.train_split)

    def queries_per_epoch(self) -> int:
        limit = self.config.train.queries_per_epoch
        kept = self.training_set.num_queries
        return min(limit, kept) if limit > 0 else kept

    def plan(self) -> List[str]:
        """The experiment in numbers (what ``--dry-run`` prints)."""
        cfg, ts = self.config, self.training_set
        queries = self.queries_per_epoch()
        tps = cfg.optim.tuples_per_step
        steps = -(-queries // tps)
        chunks = -(-queries // cfg.mining.cache_refresh)
        model = build_network(cfg.model, load_pretrained=False)
        dim = model.head_dim
        cache_mb = (self.train_split.num_database + min(cfg.mining.cache_refresh, queries)) * dim * 4 / 2**20
        lines = [
            f"data: {cfg.data.dataset}",
            "  " + self.train_split.summary(),
            f"  {ts.num_queries:,} of {self.train_split.num_queries:,} training queries kept "
            f"({ts.dropped:,} without a positive within {cfg.data.train_positive_radius:g} m)",
            "  " + self.val_split.summary(),
            "  " + self.test_split.summary(),
            f"model: {cfg.model.backbone} + {cfg.model.head} {cfg.model.head_options}, input {cfg.model.input_size[0]}x{cfg.model.input_size[1]}, "
            f"{dim:,}-d descriptors, weights {cfg.model.pretrained}",
            f"tuples: 1 query + 1 positive + {cfg.mining.negatives} negatives (pool {cfg.mining.negative_pool:,}) "
            f"+ up to {cfg.mining.difficult_positives} difficult positives (of {cfg.mining.positive_candidates} candidates"
            f"{', k-reciprocal re-ranked' if cfg.mining.rerank else ''})",
            f"epoch: {queries:,} tuples, {steps:,} steps of {tps} tuples, cache refresh every "
            f"{cfg.mining.cache_refresh:,} queries ({chunks} per epoch, {cache_mb:.1f} MB of descriptors each)",
            f"optimiser: {cfg.optim.optimizer} lr {cfg.optim.lr:g}"
            + (f", momentum {cfg.optim.momentum:g}" if cfg.optim.optimizer == "sgd" else "")
            + f", weight decay {cfg.optim.weight_decay:g}, lr x{cfg.optim.lr_gamma:g} every "
            f"{cfg.optim.lr_step_epochs} epochs of a generation",
            "schedule:",
        ]
        total_steps = 0
        for g, gen in enumerate(cfg.train.generations):
            total_steps += gen.epochs * steps
            labels = f"soft weight {gen.soft_weight:g}, teacher tau {gen.teacher_temperature:g}" if gen.soft_weight > 0 else "hard loss only"
            lines.append(f"  generation {g}: {gen.epochs} epoch(s), {gen.epochs * steps:,} steps, {labels}, student {gen.student_init}")
        label_mb = ts.num_queries * cfg.mining.difficult_positives * 9 * 4 / 2**20
        lines.append(f"total: {total_steps:,} steps; soft labels {label_mb:.2f} MB per generation")
        return lines

    # ------------------------------------------------------------------ main loop
    def run(self) -> Dict[str, Any]:
        self.load_data()
        if self.config.optim.tuples_per_step % distributed.world_size():
            raise ConfigError(
                f"optim.tuples_per_step={self.config.optim.tuples_per_step} must be a multiple of the "
                f"number of processes ({distributed.world_size()})"
            )
        if distributed.is_main():
            self.paths.make()
        distributed.barrier()
        state = load_state(self.paths.last)
        if state is not None:
            self._check_resumable(state)
            set_rng_state(state["rng"])
            history = state["history"]
            position = state["position"]
            self.log(
                f"resuming {self.paths.root} at generation {position['generation']}, epoch {position['epoch']}, "
                f"chunk {position['chunk']}, step {position['step']}"
            )
        else:
            history = {"generations": [], "epochs": [], "best": None, "seconds": 0.0}
            position = {"generation": 0, "epoch": 0, "chunk": 0, "step": 0, "global_step": 0, "phase": "start"}
        self._history = history
        started = time.perf_counter() - history["seconds"]
        self._clock_start = started
        for line in self.plan():
            self.log(line)

        schedule = self.config.train.generations
        for g in range(position["generation"], len(schedule)):
            self._run_generation(g, schedule[g], state if state and state["position"]["generation"] == g else None)
            state = None
        results = self._write_results(final=True)
        if self._writer is not None:
            self._writer.close()
        return results

    def _check_resumable(self, state: Dict[str, Any]) -> None:
        saved = state.get("config")
        current = to_dict(self.config)
        ignore = {("data", "num_workers"), ("data", "batch_size")}
        for section, values in current.items():
            if not isinstance(values, dict):
                if saved.get(section) != values:
                    raise ConfigError(f"{self.paths.root}: holds a run with {section}={saved.get(section)!r}, not {values!r}; use another --output")
                continue
            for key, value in values.items():
                if (section, key) in ignore:
                    continue
                old = saved.get(section, {}).get(key)
                if section == "train" and key == "generations":
                    old_gens, new_gens = old or [], value
                    if old_gens[: len(new_gens)] != new_gens[: len(old_gens)]:
                        raise ConfigError(f"{self.paths.root}: holds a run with another generation schedule; use another --output")
                    continue
                if old != value:
                    raise ConfigError(
                        f"{self.paths.root}: holds a run with {section}.{key}={old!r}, not {value!r}; use another --output"
                    )

    @property
    def writer(self):
        if self._writer is None:
            if distributed.is_main():
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.paths.tensorboard))
            else:
                self._writer = _NullWriter()
        return self._writer

    # ------------------------------------------------------------------ generation
    def _run_generation(self, g: int, schedule: GenerationConfig, state: Optional[Dict[str, Any]]) -> None:
        cfg = self.config
        gen_started = time.perf_counter()
        labels = self._prepare_labels(g, schedule)
        objective = Objective(
            cfg.loss, schedule, g,
            teacher_similarities=torch.from_numpy(labels.similarities) if labels is not None else None,
        )
        model = self._student(g, schedule) if state is None or state["position"]["phase"] == "start" else None
        if model is None:
            model = network_from_payload(state["model"], str(self.paths.last)).to(self.device)
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim)
        miner = HardNegativeMiner(self.training_set, cfg.mining.negatives, cfg.mining.negative_pool)
        position = {"generation": g, "epoch": 0, "chunk": 0, "step": 0, "phase": "train",
                    "global_step": state["position"]["global_step"] if state else self._global_step_default()}
        chunk = None
        if state is not None and state["position"]["phase"] != "start":
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            miner.load_state_dict(state["miner"])
            position.update({k: state["position"][k] for k in ("epoch", "chunk", "step", "global_step")})
            chunk = state.get("chunk")
        self.log(f"generation {g}: {schedule.epochs} epoch(s); objective {objective.describe()}")
        for epoch in range(position["epoch"], schedule.epochs):
            self._run_epoch(g, epoch, model, optimizer, scheduler, miner, objective, labels, position, chunk)
            chunk = None
            position.update({"epoch": epoch + 1, "chunk": 0, "step": 0})
        self._finish_generation(g, schedule, model, time.perf_counter() - gen_started)

    def _global_step_default(self) -> int:
        return int(sum(e.get("steps", 0) for e in self._history["epochs"]))

    def _prepare_labels(self, g: int, schedule: GenerationConfig) -> Optional[SoftLabels]:
        if schedule.soft_weight <= 0:
            return None
        if g == 0:
            raise ConfigError("train.generations.0.soft_weight must be 0: generation 0 has no teacher")
        teacher_path = self.paths.generation_final(g - 1)
        teacher_payload = torch.load(teacher_path, map_location="cpu", weights_only=False)
        teacher = network_from_payload(teacher_payload, str(teacher_path)).to(self.device)
        mining = self.config.mining
        expected = fingerprint(
            teacher=model_fingerprint(teacher), data=self.data_fingerprint, generation=g,
            candidates=mining.positive_candidates, keep=mining.difficult_positives, rerank=mining.rerank,
            k1=mining.rerank_k1, k2=mining.rerank_k2, lam=mining.rerank_lambda,
            temperature=schedule.teacher_temperature, input=to_dict(self.config.model),
        )
        path = self.paths.soft_labels(g)
        if path.exists():
            labels = read_soft_labels(path, expected)
            self.log(f"soft labels for generation {g}: reusing {path}")
            return labels
        started = time.perf_counter()
        labels = self._teacher_pass(g, teacher, schedule, expected)
        if distributed.is_main():
            write_soft_labels(path, labels, teacher=str(teacher_path))
        distributed.barrier()
        self.log(f"soft labels for generation {g}: teacher pass over {len(labels.query_ids):,} queries "
                 f"in {time.perf_counter() - started:.1f}s -> {path}")
        return labels

    def _teacher_pass(self, g: int, teacher: GeoNet, schedule: GenerationConfig, expected: str) -> SoftLabels:
        cfg = self.config
        ts = self.training_set
        database = self._extract(teacher, self.train_split.database_paths, "teacher: database")
        all_queries = self._extract(teacher, self.train_split.query_paths, "teacher: queries")
        kept_queries = all_queries[ts.query_ids]
        difficult = None
        if distributed.is_main():  # re-ranking runs once, not once per process
            difficult = choose_difficult_positives(
                ts, kept_queries, database, candidates=cfg.mining.positive_candidates,
                keep=cfg.mining.difficult_positives, rerank=cfg.mining.rerank and g >= 1,
                k1=cfg.mining.rerank_k1, k2=cfg.mining.rerank_k2, lam=cfg.mining.rerank_lambda,
                all_query_descriptors=all_queries,
            )
        difficult = distributed.broadcast_object(difficult)
        mine = distributed.shard(ts.num_queries)
        local = teacher_similarities(
            teacher, kept_queries[mine.start : mine.stop], self.train_split.database_paths,
            difficult[mine.start : mine.stop], teacher.transform(), device=self.device,
            batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers, progress=self.progress,
        )
        similarities = distributed.all_gather_rows(local, ts.num_queries)
        return SoftLabels(
            query_ids=ts.query_ids.copy(), positive_ids=difficult, similarities=similarities,
            teacher_temperature=schedule.teacher_temperature, fingerprint=expected, generation=g,
        )

    def _student(self, g: int, schedule: GenerationConfig) -> GeoNet:
        if schedule.student_init == "continue" and g > 0:
            payload = torch.load(self.paths.generation_final(g - 1), map_location="cpu", weights_only=False)
            self.log(f"generation {g}: student continues from generation {g - 1}")
            return network_from_payload(payload, str(self.paths.generation_final(g - 1))).to(self.device)
        return self._initial_model()

    def _initial_model(self) -> GeoNet:
        """Fresh weights + NetVLAD k-means, computed once per run and cached."""
        cfg = self.config
        key = fingerprint(model=to_dict(cfg.model), seed=cfg.seed, data=self.data_fingerprint)
        path = self.paths.cache / f"init_{key}.pt"
        if not path.exists() and distributed.is_main():
            self._create_initial_model(path)
        distributed.barrier()
        # read back, so that a fresh run and a resumed one start from bit-identical weights
        payload = torch.load(path, map_location="cpu", weights_only=False)
        return network_from_payload(payload, str(path)).to(self.device)

    def _create_initial_model(self, path: Path) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        model = build_network(cfg.model).to(self.device)
        alpha = initialise_network(
            model, list(self.train_split.database_paths), num_images=cfg.model.init_images,
            descriptors_per_image=cfg.model.init_descriptors_per_image, seed=cfg.seed,
            device=self.device, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
        )
        if alpha is not None:
            self.log(f"NetVLAD initialised by k-means on {min(cfg.model.init_images, self.train_split.num_database)} "
                     f"training images (alpha {alpha:.1f}); cached in {path}")
        model.save(path)

    # ------------------------------------------------------------------ epoch
    def _run_epoch(self, g, epoch, model, optimizer, scheduler, miner, objective, labels, position, chunk) -> None:
        cfg = self.config
        ts = self.training_set
        epoch_started = time.perf_counter()
        order = np.random.default_rng([cfg.seed, g, epoch]).permutation(ts.num_queries)[: self.queries_per_epoch()]
        chunks = [order[i : i + cfg.mining.cache_refresh] for i in range(0, len(order), cfg.mining.cache_refresh)]
        transform = build_train_transform(model, cfg.augment)
        trained = _data_parallel(model, self.device)
        totals: Dict[str, float] = {}
        count = 0
        for c in range(position["chunk"], len(chunks)):
            if chunk is None:
                chunk = self._mine_chunk(g, epoch, c, model, miner, chunks[c], labels, objective)
                position.update({"chunk": c, "step": 0})
                self._save(position, model, optimizer, scheduler, miner, chunk)
            dataset = TupleDataset(
                self.train_split, chunk["rows"], chunk["tuples"], cfg.mining.negatives, transform,
                seed=int(fingerprint(seed=cfg.seed, g=g, e=epoch, c=c), 16) % (2**31),
            )
            per_rank = cfg.optim.tuples_per_step // distributed.world_size()
            loader = DataLoader(
                Subset(dataset, _rank_tuples(len(dataset), cfg.optim.tuples_per_step, position["step"])),
                batch_size=per_rank, shuffle=False, num_workers=cfg.data.num_workers, collate_fn=dataset.collate,
            )
            model.train()
            bar = tqdm(loader, desc=f"gen {g} epoch {epoch} chunk {c + 1}/{len(chunks)}", disable=not self.progress, leave=False)
            for batch in bar:
                out = self._train_step(trained, optimizer, objective, batch.to(self.device), g, epoch, position)
                position["step"] += 1
                position["global_step"] += 1
                count += 1
                for name, value in out.items():
                    totals[name] = totals.get(name, 0.0) + value
                bar.set_postfix(loss=f"{out['total']:.3f}")
                every = cfg.train.checkpoint_every
                if every and position["global_step"] % every == 0:
                    self._save(position, model, optimizer, scheduler, miner, chunk)
                self._maybe_stop()
            chunk = None
            position["step"] = 0
        scheduler.step()
        means = {k: v / max(count, 1) for k, v in totals.items()}
        val_report, val_predictions = self._evaluate(model, self.val_split)
        record = {
            "generation": g, "epoch": epoch, "steps": count, "val": _short(val_report),
            "losses": means, "seconds": time.perf_counter() - epoch_started,
        }
        self._history["epochs"].append(record)
        for n, value in val_report["recall"].items():
            self.writer.add_scalar(f"val/recall@{n}", value, position["global_step"])
        self._log_examples(val_predictions, position["global_step"], f"gen{g}/epoch{epoch}")
        self.log(f"generation {g} epoch {epoch}: {_format_losses(means)}; val {_format_recall(val_report)} "
                 f"({record['seconds']:.0f}s)")
        position.update({"epoch": epoch + 1, "chunk": 0, "step": 0})
        epoch_path = self.paths.epoch_checkpoint(g, epoch)
        self._update_best(model, val_report, g, epoch, epoch_path)
        self._history["seconds"] = time.perf_counter() - self._clock_start
        self._save(position, model, optimizer, scheduler, miner, None, extra_path=epoch_path)

    def _mine_chunk(self, g, epoch, c, model, miner, rows, labels, objective) -> Dict[str, np.ndarray]:
        """Re-encode the descriptor cache (sharded) and mine this chunk's tuples (once)."""
        cfg = self.config
        ts = self.training_set
        database = self._extract(model, self.train_split.database_paths, "cache: database")
        query_ids = ts.query_ids[rows]
        queries = self._extract(model, [self.train_split.query_paths[i] for i in query_ids], "cache: queries")
        chunk = None
        if distributed.is_main():
            rng = np.random.default_rng([cfg.seed, g, epoch, c, 7])
            best_positive, negatives = miner.mine(rows, queries, database, rng)
            if objective.needs_difficult_positives:
                difficult = labels.positive_ids[rows]
            else:
                difficult = np.zeros((len(rows), 0), dtype=np.int64)
            chunk = {"rows": np.asarray(rows, dtype=np.int64),
                     "tuples": assemble_tuples(query_ids, best_positive, negatives, difficult)}
        return distributed.broadcast_object(chunk)

    def _train_step(self, model, optimizer, objective, batch, g, epoch, position) -> Dict[str, float]:
        descriptors = compute_descriptors(model, batch.images, objective.needs_regions)
        out = objective(batch, descriptors)
        # the mean over processes = the loss of the global batch; every process takes the
        # same decision on a non-finite value, so none is left waiting in a collective
        terms = {**out.terms, "total": out.total}
        values = {name: distributed.all_reduce_sum(float(value.detach())) / distributed.world_size()
                  for name, value in terms.items()}
        if not np.isfinite(values["total"]):
            text = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            raise TrainingError(
                f"non-finite loss at generation {g}, epoch {epoch}, step {position['step']} ({text}); "
                f"the last good checkpoint is {self.paths.last}"
            )
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.optim.grad_clip)
        optimizer.step()
        step = position["global_step"]
        for name, value in values.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
        for name, value in out.stats.items():
            self.writer.add_scalar(f"soft_labels/{name}", value, step)
        return values

    def _maybe_stop(self) -> None:
        self._steps_this_process += 1
        if self.stop_after_steps is not None and self._steps_this_process >= self.stop_after_steps:
            raise _Interrupted()

    # ------------------------------------------------------------------ bookkeeping
    def _save(self, position, model, optimizer, scheduler, miner, chunk, extra_path: Optional[Path] = None) -> None:
        """Only the main process writes; the others wait so that nobody runs ahead of a
        checkpoint it might have to resume from."""
        if distributed.is_main():
            state = {
                "config": to_dict(self.config),
                "position": dict(position),
                "model": model.checkpoint_payload(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "miner": miner.state_dict(),
                "chunk": chunk,
                "history": self._history,
            }
            if extra_path is not None:
                save_state(extra_path, state)
            save_state(self.paths.last, state)
        distributed.barrier()

    def _write_results(self, final: bool) -> Dict[str, Any]:
        if distributed.is_main():
            return write_results(self.paths, self.config, self._history, final=final)
        return {"generations": self._history["generations"], "best": self._history["best"],
                "seconds": self._history["seconds"]}

    def _extract(self, model, paths, what: str) -> np.ndarray:
        """Descriptors of ``paths`` in order; each process encodes its shard, all get all."""
        return extract_descriptors_sharded(
            model, list(paths), model.transform(), batch_size=self.config.data.batch_size,
            device=self.device, num_workers=self.config.data.num_workers,
            progress=what if self.progress else False,
        )

    def _evaluate(self, model, split: Split) -> Tuple[Dict[str, Any], Optional[np.ndarray]]:
        """Recall@N on ``split`` (sharded extraction, one search on the main process); the
        report reaches every process, the predictions only the main one."""
        evaluation = evaluate(
            model, split, device=self.device, batch_size=self.config.data.batch_size,
            num_workers=self.config.data.num_workers, ns=(1, 5, 10, 20),
            threshold=self.config.data.eval_positive_radius, index=self.config.eval.index, progress=self.progress,
        )
        report = evaluation.report if evaluation is not None else None
        return distributed.broadcast_object(report), evaluation.predictions if evaluation is not None else None

    def _update_best(self, model, val_report, g, epoch, epoch_path) -> None:
        metric = self.config.train.best_metric
        value = val_report["recall"].get(metric)
        if value is None:
            raise ConfigError(f"train.best_metric '{metric}' is not one of the Recall@N keys {list(val_report['recall'])}")
        best = self._history["best"]
        if best is None or value > best["val"][metric]:
            self._history["best"] = {"generation": g, "epoch": epoch, "val": _short(val_report),
                                     "metric": f"val R@{metric}", "checkpoint": str(epoch_path)}
            if distributed.is_main():
                model.save(self.paths.best, extra={"selected_on": f"{self.config.train.val_split} R@{metric}",
                                                   "generation": g, "epoch": epoch})

    def _finish_generation(self, g: int, schedule: GenerationConfig, model: GeoNet, seconds: float) -> None:
        val_report, _ = self._evaluate(model, self.val_split)
        test_report, _ = self._evaluate(model, self.test_split)
        final_path = self.paths.generation_final(g)
        if distributed.is_main():
            model.save(final_path, extra={"generation": g})
            model.save(self.paths.final, extra={"generation": g})
        epochs = [e for e in self._history["epochs"] if e["generation"] == g]
        metric = self.config.train.best_metric
        best_epoch = max(epochs, key=lambda e: e["val"][metric]) if epochs else None
        self._history["generations"].append({
            "generation": g,
            "epochs": schedule.epochs,
            "soft_weight": schedule.soft_weight,
            "teacher_temperature": schedule.teacher_temperature if schedule.soft_weight > 0 else None,
            "student_init": schedule.student_init,
            "val": _short(val_report),
            "test": _short(test_report),
            "seconds": sum(e["seconds"] for e in epochs) if epochs else seconds,
            "final_checkpoint": str(final_path),
            "best_checkpoint": str(self.paths.epoch_checkpoint(g, best_epoch["epoch"])) if best_epoch else None,
        })
        self._history["seconds"] = time.perf_counter() - self._clock_start
        for split_name, report in (("val", val_report), ("test", test_report)):
            for n, value in report["recall"].items():
                self.writer.add_scalar(f"generation/{split_name}_recall@{n}", value, g)
        self.log(f"generation {g} done: val {_format_recall(val_report)}; test {_format_recall(test_report)}")
        position = {"generation": g + 1, "epoch": 0, "chunk": 0, "step": 0, "phase": "start",
                    "global_step": self._global_step_default()}
        self._write_results(final=False)
        optimizer = build_optimizer(model, self.config.optim)
        scheduler = build_scheduler(optimizer, self.config.optim)
        miner = HardNegativeMiner(self.training_set, self.config.mining.negatives, self.config.mining.negative_pool)
        self._save(position, model, optimizer, scheduler, miner, None)

    def _log_examples(self, predictions: Optional[np.ndarray], step: int, tag: str) -> None:
        count = self.config.train.tensorboard_examples
        if count <= 0 or predictions is None or not distributed.is_main():
            return
        positives = self.val_split.positives(self.config.data.eval_positive_radius)
        rows = np.linspace(0, self.val_split.num_queries - 1, num=min(count, self.val_split.num_queries)).astype(int)
        grid = retrieval_grid(self.val_split, rows, predictions[rows, :5], positives, thumb=(72, 96))
        self.writer.add_image(f"retrieval/{tag}", grid, step, dataformats="HWC")


def _data_parallel(model: GeoNet, device: torch.device):
    """The module to train through: DistributedDataParallel under torchrun, else the model."""
    if not distributed.is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _rank_tuples(count: int, tuples_per_step: int, first_step: int) -> List[int]:
    """Tuple indices this process trains on from ``first_step`` on: each global step's
    ``tuples_per_step`` tuples are split evenly over the processes, so the global batch
    is the same for any number of processes."""
    size, r = distributed.world_size(), distributed.rank()
    per_rank = tuples_per_step // size
    indices: List[int] = []
    for start in range(first_step * tuples_per_step, count, tuples_per_step):
        step = list(range(start, min(start + tuples_per_step, count)))
        if len(step) == tuples_per_step:
            indices += step[r * per_rank : (r + 1) * per_rank]
        elif len(step) >= size:  # a short last step, still shared by every process
            indices += step[r::size]
        # else: too short to give every process a tuple; skipping it keeps them in step
    return indices


class _NullWriter:
    """TensorBoard stand-in for processes other than the main one."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _Interrupted(Exception):
    """Raised by the ``stop_after_steps`` test hook to emulate a killed process."""


def _short(report: Dict[str, Any]) -> Dict[str, float]:
    return {n: round(v, 2) for n, v in report["recall"].items() if n in ("1", "5", "10", "20")}


def _format_recall(report: Dict[str, Any]) -> str:
    return " ".join(f"R@{n} {v:.1f}" for n, v in report["recall"].items() if n in ("1", "5", "10"))


def _format_losses(means: Dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in means.items())
