"""Learning on SynthFACS: does training teach recognition? SFT and GRPO on the embedded model, with a control.

Every stage is the command a user runs (``python -m emoreason …``), so the run checks the whole path from
pixels through video tokens, SFT and GRPO into the answer and the cited AUs:

  1. ``emoreason tiny-model``  the embedded Qwen2.5-VL at the sizes given (``--model-size key=value …``)
  2. ``emoreason synth``       SynthFACS, 8 basic classes, identity-disjoint train/val/test
  3. ``emoreason synth-cot``   verified AU-grounded CoT rows (+ AU-perception and short-answer rows)
  4. ``emoreason vision-warmup`` (optional, ``vision_warmup``): the tower + merger trained alone on the arm's
                               CoT rows' labels and AUs through linear heads (no text), the model SFT then starts
                               from — a scratch stand-in for a pretrained face encoder
     ``emoreason sft``         the curriculum's stages, in order (each from the previous stage's model)
  5. control                   the same SFT on the same rows with every training clip's video swapped for
                               another training clip's (a derangement): labels unchanged, pixels uninformative
     positive control          (``label_coded=true``) the same SFT and eval with every clip's video (train and
                               test) replaced by a flat colour that encodes its label: the video path itself works
                               iff this arm learns, so a result at chance says "the faces are too hard" and not
                               "the pipeline drops the video"
  6. ``emoreason eval``        SFT, control (and the untrained model) on the test split; checkpoints on a
                               subset for the held-out curve
  7. ``emoreason grpo``        from the SFT model; evaluated on the same test split, compared to SFT by a
                               paired bootstrap (WAR and cited-AU F1)
  8. ``learning_curves.png`` and ``metrics.json`` (figures, targets met or not, wall time per stage)

    python bench/learning.py --out runs/learning          # from the untrained model, 112 px: at chance (history)
    python bench/learning.py --quick --out /tmp/learn     # shortened run (the slow test)
    python bench/learning.py --scale gpu --out runs/learning-gpu   # larger sizes for a GPU
    python bench/learning.py --scale warmup --out runs/learning-warmup  # posed faces, vision warm-up, then SFT:
                                         # the WAR target with the control on 2 cores (~18 min; docs/benchmarks.md)
    python bench/learning.py --scale cot --out runs/learning-cot   # then CoT rows and GRPO: cited AUs, GRPO's gain

Resumable: a stage whose output exists is skipped (each command resumes its own work too).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 1 / 8  # 8 basic classes, balanced by SynthFACS' planner
TARGETS = {"sft_war": 0.60, "sft_au_f1": 0.60, "sft_hallucination_max": 0.20, "control_margin": 0.05}


@dataclass
class Plan:
    """What one learning run does; presets below, every field overridable (``--set key=value``)."""

    family: str = "qwen2_5_vl"
    model_size: list[str] = field(default_factory=list)  # TinySpec key=value
    clips: int = 2400
    size: int = 112
    frames: int = 16
    difficulty: str = "easy"
    profile: str = "apex_offset"  # SynthFACS temporal profile; onset_apex holds the apex to the last frame
    # the frame policy of training and scoring alike (a model is scored on the frames it was trained on)
    frame_policy: dict = field(default_factory=lambda: {"fps": 4.0, "max_frames": 8})
    seed: int = 0
    cot_tasks: dict = field(default_factory=lambda: {"cot": 1.0})
    # SFT curriculum: (name, recipe, overrides); each stage starts from the previous one's model
    sft_stages: list[dict] = field(default_factory=list)
    control: bool = True
    # positive control: the same stages on label-coded video (a diagnostic of the path, never a result)
    label_coded: bool = False
    # vision warm-up before SFT (`emoreason vision-warmup` with this recipe, the frame policy and seed above, then
    # these overrides) on each arm's CoT dataset: the control arm's clips are deranged, so no arm sees its own faces'
    # labels
    vision_warmup: bool = False
    vision_warmup_recipe: str = "recipes/tiny/warmup/synthfacs.yaml"
    vision_warmup_overrides: list[str] = field(default_factory=list)
    train_sft: bool = True  # false with control: the control arm alone (e.g. in a second process on shared data)
    grpo_recipe: str = "recipes/tiny/grpo/synthfacs.yaml"
    grpo_overrides: list[str] = field(default_factory=list)
    grpo: bool = True
    # arms trained at once (sft, control, label_coded), each in its own processes with an equal share of the CPUs:
    # the wall time of one arm; throughput about that of the arms in turn (SFT of the tiny model on 2 cores: 1.21
    # steps/s per arm side by side, 2.35 steps/s with both threads in turn — docs/benchmarks.md)
    arm_jobs: int = 1
    eval_limit: int | None = None  # test clips scored (None: the whole test split)
    # the question scored: "cot" (the benchmark's reasoning prompt) or "emotion" (the short-answer rows' prompt,
    # for a curriculum whose last stage trains on label-only rows)
    eval_task: str = "cot"
    curve_limit: int = 64  # test clips scored per checkpoint for the held-out curve (0: no curve)
    eval_untrained: bool = False
    # linear probe of the video tokens (emoreason.evaluation.probe) of the untrained model and of each arm's SFT
    # model: does the vision path carry the class at all, before and after training? (0: skip)
    probe_train_clips: int = 1200
    bootstrap_resamples: int = 10000


LEARNING_RECIPE = "recipes/tiny/sft/synthfacs_learning.yaml"
# the vision path of a random-init model at a higher rate than the language model (see docs/benchmarks.md)
MODULE_RATES = ["vision_learning_rate=1e-3", "projector_learning_rate=1e-3", "learning_rate=1e-3"]
# two frames, neutral first and apex last (onset_apex holds the apex to the last frame): one temporal patch that
# holds the expression change, 16 video tokens at 112 px
TWO_FRAMES = {"profile": "onset_apex", "frame_policy": {"fps": 4.0, "max_frames": 2}}


def preset(name: str) -> Plan:
    if name == "quick":
        return Plan(clips=640, **TWO_FRAMES, grpo=False, eval_limit=96, curve_limit=32, probe_train_clips=400,
                    sft_stages=[{"name": "sft", "recipe": LEARNING_RECIPE,
                                 "overrides": [*MODULE_RATES, "num_train_epochs=2", "save_steps=40"]}])
    if name == "gpu":
        return Plan(model_size=["vision_hidden=256", "vision_depth=6", "vision_heads=4", "vision_intermediate=512",
                                "text_hidden=256", "text_layers=4", "text_heads=4", "text_kv_heads=2",
                                "text_intermediate=768"],
                    clips=8000, size=224, profile="onset_apex",
                    frame_policy={"fps": 4.0, "max_frames": 2, "max_pixels": 50176},
                    sft_stages=[{"name": "sft", "recipe": LEARNING_RECIPE,
                                 "overrides": [*MODULE_RATES, "num_train_epochs=6", "per_device_train_batch_size=16"]}],
                    grpo_overrides=["max_steps=200"])
    if name == "warmup":
        # posed faces at 56 px through a 28 px patch: the 2x2 patches merge into one video token per clip (the
        # merger concatenates the quadrants, so nothing is averaged away); the tower warms up on labels and AUs,
        # then SFT on short answers reads it (docs/benchmarks.md, "Where the signal stops")
        # The AU-perception rows carry each clip's observed AUs (an emotion-only synth-cot run computes no AU
        # evidence): the warm-up's AU head reads them, SFT trains on the short answers alone.
        # 3,200 clips (2,252 training identities' clips): the warm-up tower's identity overfitting is what data buys
        # down (1,600 clips: SFT 51 %; 3,200: 66 %, docs/benchmarks.md); both arms side by side, ~18 min on 2 cores
        return Plan(model_size=["vision_patch=28"], clips=3200, size=56, difficulty="posed", profile="onset_apex",
                    frame_policy={"fps": 4.0, "max_frames": 2, "min_pixels": 3136, "max_pixels": 3136},
                    cot_tasks={"emotion": 1.0, "au_perception": 1.0}, eval_task="emotion", curve_limit=64,
                    probe_train_clips=0, grpo=False, vision_warmup=True, arm_jobs=2,
                    sft_stages=[{"name": "sft", "recipe": LEARNING_RECIPE,
                                 "overrides": ["tasks=[emotion]", "vision_learning_rate=1e-4", "projector_learning_rate=1e-3",
                                               "learning_rate=1e-3", "num_train_epochs=6",
                                               "per_device_train_batch_size=16", "save_steps=200"]}])
    if name == "cot":
        # the warm-up preset, then the demo's CoT stage (CoT rows with the short answers kept) and GRPO at a low
        # rollout temperature, all scored with the CoT question (cited AUs, hallucination, GRPO's paired gain): the
        # commands of docs/benchmarks.md's 3,200-clip CoT and GRPO figures as one run. No control arm by default
        # (the warm-up preset carries it: its CoT stages would add ~1 h on 2 cores).
        warm = preset("warmup")
        cot_stage = {"name": "sft_cot", "recipe": LEARNING_RECIPE,
                     "overrides": ["learning_rate=2e-3", "projector_learning_rate=2e-3", "vision_learning_rate=1e-4",
                                   "num_train_epochs=3", "per_device_train_batch_size=8", "save_steps=400"]}
        return replace(warm, cot_tasks={"cot": 1.0, "emotion": 1.0}, eval_task="cot", control=False, curve_limit=0,
                       sft_stages=[*warm.sft_stages, cot_stage], grpo=True,
                       grpo_overrides=["max_steps=100", "learning_rate=1e-4", "temperature=0.3", "num_generations=8",
                                       "per_device_train_batch_size=32", "reward_options={}",
                                       "reward_weights=[0.5, 1.0, 2.0, 0.5, 0.5]"])
    return Plan(**TWO_FRAMES, sft_stages=[{"name": "sft", "recipe": LEARNING_RECIPE,
                                           "overrides": [*MODULE_RATES, "save_steps=105"]}])


# --- running the user's commands ------------------------------------------------------------------------------
class Runner:
    def __init__(self, out: Path, dry: bool = False):
        self.out, self.dry = out, dry
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self._live: set[subprocess.Popen] = set()  # stages running now (arms side by side: one per arm)
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def emoreason(self, name: str, *args: str, threads: int | None = None) -> None:
        """``python -m emoreason ARGS``, output to logs/NAME.log; a failure raises naming the log."""
        self.command(name, [sys.executable, "-m", "emoreason", *args], f"emoreason {' '.join(args)}", threads)

    def command(self, name: str, cmd: list[str], shown: str, threads: int | None = None) -> None:
        """Run ``cmd`` from the repository root, output to logs/NAME.log (``threads``: its torch/OpenMP threads);
        a failure raises naming the log."""
        print(f"$ {shown}", flush=True)
        if self.dry:
            return
        start = time.time()
        log = self.logs / f"{name}.log"
        with log.open("a") as handle:
            handle.write(f"\n$ {' '.join(cmd)}\n")
            handle.flush()
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            with self._lock:  # with stop()'s: a stage either starts before the stop (and is terminated) or never
                if self._stopping.is_set():
                    raise RuntimeError(f"stage {name} not started: the run is stopping")
                process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
                self._live.add(process)
            try:
                returncode = process.wait()
            except BaseException:  # an interrupt of the caller (Ctrl-C, a test timeout): the stage stops with it
                self.stop()
                raise
            finally:
                with self._lock:
                    self._live.discard(process)
        self.timings[name] = self.timings.get(name, 0.0) + time.time() - start
        if returncode and self._stopping.is_set():
            raise RuntimeError(f"stage {name} stopped (exit {returncode}): the run is stopping; log {log}")
        if returncode:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
            raise RuntimeError(f"stage {name} failed (exit {returncode}); log {log}:\n{tail}")
        print(f"  {name} done in {time.time() - start:.0f}s", flush=True)

    def stop(self, grace_s: float = 10.0) -> None:
        """Terminate every running stage (then kill what outlives ``grace_s``) and start no more: one arm failed,
        or the run itself was interrupted. Each stage resumes from its own output on the next run."""
        with self._lock:
            self._stopping.set()
            live = list(self._live)
        for process in live:
            process.terminate()
        for process in live:
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity (a container's or taskset's limit), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_share(jobs: int, cpus: int | None = None) -> int | None:
    """Threads per stage with ``jobs`` stages side by side: an equal share of ``cpus`` (default: the usable
    CPUs), at least one; None (inherit) for one job at a time."""
    if jobs <= 1:
        return None
    return max(1, (cpus or usable_cpus()) // jobs)


def side_by_side(runner: Runner, jobs: dict[str, Callable[[], Path]], workers: int) -> dict[str, Path]:
    """Run ``jobs`` (name → callable) on ``workers`` threads; returns name → result. The first failure, or an
    interrupt of the caller, stops every other job's running stage (``Runner.stop``) rather than letting it train
    on for minutes; the error names every job that failed."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures = {pool.submit(job): name for name, job in jobs.items()}
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(future.exception() for future in done):
            runner.stop()
        wait(futures)
    except BaseException:
        runner.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    failed = {name: future.exception() for future, name in futures.items() if future.exception()}
    if failed:
        # the cause first: a job that failed on its own, then the ones stopped because of it
        order = sorted(failed, key=lambda name: "the run is stopping" in str(failed[name]))
        cause = failed[order[0]]
        raise RuntimeError("; ".join(f"{name}: {type(failed[name]).__name__}: {failed[name]}"
                                     for name in order)) from cause
    return {name: future.result() for future, name in futures.items()}


# --- the control: the same rows with every training clip's video swapped for another training clip's ------------
def derangement(items: list, seed: int) -> list:
    """``items`` reordered so that no position keeps its item (rejection sampling: a uniform random derangement,
    ~e tries); a single item stays."""
    rng = random.Random(seed)
    shuffled = items[:]
    while len(items) > 1 and any(a == b for a, b in zip(items, shuffled, strict=True)):
        rng.shuffle(shuffled)
    return shuffled


def frames_yaml(frame_policy: dict) -> str:
    """A frame policy as the YAML mapping eval's ``frames=`` (and tower_probe's ``--frames``) takes."""
    return "{" + ", ".join(f"{k}: {v}" for k, v in frame_policy.items()) + "}"


def shuffled_synth_copy(synth_dir: Path, out_dir: Path, seed: int = 0) -> dict:
    """Write ``out_dir``: the SynthFACS split lists of ``synth_dir`` with each training clip's media replaced by
    another training clip's (a derangement; labels and AUs stay with the record, the clips are linked, not copied):
    a control for stages that read the SynthFACS manifest rather than CoT rows (``bench/audio_warmup.py``'s
    deranged-track control, docs/benchmarks.md)."""
    records = [json.loads(line) for line in (synth_dir / "train.jsonl").read_text().splitlines() if line.strip()]
    paths = [r["media"]["path"] for r in records]
    shuffled = derangement(paths, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "train.jsonl").open("w") as handle:
        for record, path in zip(records, shuffled, strict=True):
            handle.write(json.dumps({**record, "media": {**record["media"], "path": path}}) + "\n")
    for name in ("val.jsonl", "test.jsonl", "manifest.jsonl"):
        if (synth_dir / name).is_file():
            shutil.copyfile(synth_dir / name, out_dir / name)
    if not (out_dir / "clips").exists():
        (out_dir / "clips").symlink_to((synth_dir / "clips").resolve(), target_is_directory=True)
    return {"clips": len(paths), "kept_own_video": sum(a == b for a, b in zip(paths, shuffled, strict=True))}


def shuffled_copy(hf_dir: Path, out_dir: Path, split: str = "train", seed: int = 0) -> dict:
    """Write ``out_dir``: ``hf_dir`` with each ``split`` clip's video replaced by another clip's (a derangement,
    so no clip keeps its own frames; all rows of one clip get the same other clip). Rows with an ``audio_path``
    (the clip's track in another file) get the other clip's with its video, so no row still hears its own track;
    a row whose ``audio_path`` has no video to move with, or one clip with two tracks, is a ValueError. Returns
    counts."""
    import datasets

    data = datasets.load_from_disk(str(hf_dir))
    train = data[split]
    videos = sorted({v for v in train["video"] if v})
    swap = dict(zip(videos, derangement(videos, seed), strict=True))
    if "audio_path" not in train.column_names:
        data[split] = train.map(lambda row: {"video": swap.get(row["video"], row["video"])})
    else:
        track: dict[str, str | None] = {}
        ids = train["id"] if "id" in train.column_names else ["?"] * len(train)
        for row_id, video, audio in zip(ids, train["video"], train["audio_path"], strict=True):
            if audio and not video:
                raise ValueError(f"{hf_dir} ({split}) row {row_id}: audio_path {audio!r} but no video to swap it "
                                 "with; the control would hear its own track")
            if video and track.setdefault(video, audio) != audio:
                raise ValueError(f"{hf_dir} ({split}): rows of {video} name two audio tracks "
                                 f"({track[video]!r}, {audio!r})")
        data[split] = train.map(lambda row: {"video": swap.get(row["video"], row["video"]),
                                             "audio_path": track[swap[row["video"]]] if row["video"]
                                             else row["audio_path"]})
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    data.save_to_disk(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"clips": len(videos), "rows": len(train), "kept_own_video": sum(a == b for a, b in swap.items())}


# --- the positive control: every clip's frames replaced by a flat colour that encodes its label -------------------
def _palette(labels: list[str]) -> dict[str, tuple[int, int, int]]:
    import colorsys

    return {label: tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / len(labels), 0.8, 0.9))
            for i, label in enumerate(labels)}


def label_coded_copy(synth_dir: Path, hf_dir: Path, out_synth: Path, out_hf: Path, seed: int = 0) -> dict:
    """Write ``out_synth`` (the SynthFACS tree with each clip replaced by a flat, label-coloured clip of the same
    length, size and rate, plus light noise) and ``out_hf`` (the rows of ``hf_dir`` pointing at those clips).
    A diagnostic: labels leak into the pixels on purpose, so the arm shows the video path can carry a label."""
    import datasets
    import numpy as np

    from emoreason.video import write_video

    manifest = [json.loads(line) for line in (synth_dir / "manifest.jsonl").read_text().splitlines()]
    colours = _palette(sorted({r["emotion"] for r in manifest}))
    rng = np.random.default_rng(seed)
    (out_synth / "clips").mkdir(parents=True, exist_ok=True)
    for path in synth_dir.iterdir():  # manifest, split lists, records, config: the same records, other pixels
        if path.is_file():
            shutil.copyfile(path, out_synth / path.name)
        elif path.name != "clips":
            shutil.copytree(path, out_synth / path.name, dirs_exist_ok=True)
    for record in manifest:
        source, target = synth_dir / record["media"]["path"], out_synth / record["media"]["path"]
        if target.is_file():
            continue
        media = record["media"]
        if not source.is_file():
            raise FileNotFoundError(f"{record['id']}: clip {source} is missing")
        frames = np.asarray(colours[record["emotion"]], dtype=np.float32)[None, None, None, :]
        frames = frames + rng.normal(0, 6, (media["frames"], media["height"], media["width"], 3))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_video(np.clip(frames, 0, 255).astype(np.uint8), target, fps=media["fps"])
    data = datasets.load_from_disk(str(hf_dir))
    prefix, coded = str(synth_dir.resolve()), str(out_synth.resolve())
    moved = data.map(lambda row: {"video": row["video"].replace(prefix, coded, 1) if row["video"] else row["video"]})
    missing = [v for split in moved for v in moved[split]["video"] if v and not Path(v).is_file()]
    if missing:
        raise FileNotFoundError(f"label-coded rows point at {len(missing)} missing clips, e.g. {missing[0]}")
    tmp = out_hf.with_name(out_hf.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    moved.save_to_disk(str(tmp))
    shutil.rmtree(out_hf, ignore_errors=True)
    tmp.rename(out_hf)
    return {"clips": len(manifest), "colours": colours}


# --- the vision probe -------------------------------------------------------------------------------------------
def probe(model_dir: Path, synth_dir: Path, plan: Plan) -> dict:
    """Linear probe (flattened video tokens) fitted on training clips, scored on the test clips the eval scores;
    cached beside the model, keyed on the model's files, the clips, the frame policy and the probe's options."""
    from dataclasses import replace

    from transformers import AutoProcessor

    from emoreason.evaluation.probe import cached_probe
    from emoreason.models import frame_policy_for

    policy = replace(frame_policy_for(AutoProcessor.from_pretrained(str(model_dir))), **plan.frame_policy)
    rows = {split: [json.loads(line) for line in (synth_dir / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "test")}
    rows["train"] = rows["train"][:plan.probe_train_clips]
    rows["test"] = rows["test"][:plan.eval_limit] if plan.eval_limit else rows["test"]
    pairs = {split: [(synth_dir / r["media"]["path"], r["emotion"]) for r in rows[split]] for split in rows}
    result = cached_probe(model_dir.parent, model_dir, pairs["train"], pairs["test"], policy, pool="flat",
                          weight_decay=1e-2)
    print(f"vision probe {model_dir}: {result}", flush=True)
    return result


# --- scoring -----------------------------------------------------------------------------------------------------
def test_records(synth_dir: Path, limit: int | None):
    from emoreason.datasets import load_records
    from emoreason.evaluation.benchmarks import load_benchmark

    spec = load_benchmark("synthfacs")
    records = list(load_records(spec.dataset_format, str(synth_dir), split=spec.split))
    return records[:limit] if limit else records


def summarise(run_dir: Path, records) -> dict:
    from emoreason.evaluation.significance import per_sample, wilson_interval

    metrics = json.loads((run_dir / "metrics.json").read_text())
    items = per_sample(run_dir, records)
    correct = sum(x["correct"] for x in items)
    low, high = wilson_interval(correct, len(items))
    rationale = metrics.get("rationale", {})
    support = metrics["recognition"].get("support") or {}
    # the bar: a uniform guess or always answering the split's most frequent class, whichever scores more
    bar = max([CHANCE] + ([max(support.values()) / len(items)] if support and items else []))
    return {"n": len(items), "war": metrics["recognition"]["war"], "war_ci95": [low, high], "chance_bar": bar,
            "uar": metrics["recognition"]["uar"], "au_f1": rationale.get("au_f1"),
            "hallucination_rate": rationale.get("hallucination_rate"),
            "format_valid": rationale.get("format_valid"),
            "au_detection_mean_f1": (metrics.get("au") or {}).get("mean_f1"),
            "predicted": _prediction_counts(metrics)}


def _prediction_counts(metrics: dict) -> dict:
    rec = metrics["recognition"]
    labels, matrix = rec["labels"], rec["confusion_matrix"]
    return {c: sum(row[j] for row in matrix) for j, c in enumerate(labels)}


def history(output_dir: Path) -> list[dict]:
    """The trainer's log history (loss, rewards, …) from the latest trainer_state.json or train_summary.json."""
    states = sorted(output_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    summary = output_dir / "train_summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        rows = data.get("loss_history") or data.get("reward_history")
        if rows:
            return rows
    return json.loads(states[-1].read_text())["log_history"] if states else []


def plot_curves(path: Path, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=80)
    ax = axes[0]
    for name, rows in curves["loss"].items():
        pts = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=name)
    ax.set_title("SFT training loss")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, rows in curves["war"].items():
        if rows:
            ax.plot([r["step"] for r in rows], [100 * r["war"] for r in rows], marker="o", label=name)
    ax.axhline(100 * CHANCE, color="grey", ls="--", lw=1, label="chance (12.5 %)")
    ax.set_title("held-out WAR (test subset)")
    ax.set_xlabel("SFT step")
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    ax = axes[2]
    rewards = curves.get("rewards") or []
    keys = sorted({k for r in rewards for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    for key in keys:
        pts = [(r["step"], r[key]) for r in rewards if key in r]
        ax.plot(*zip(*pts, strict=True), label=key.split("/")[1])
    if rewards:
        ax.plot([r["step"] for r in rewards if "reward" in r], [r["reward"] for r in rewards if "reward" in r],
                color="black", lw=2, label="total")
    ax.set_title("GRPO rewards (mean per step)" if rewards else "GRPO rewards (no GRPO stage)")
    ax.set_xlabel("GRPO step")
    if rewards:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def warm_up(runner: Runner, plan: Plan, model: Path, out: Path, arm: str, data: Path,
            threads: int | None = None) -> Path:
    """The arm's vision warm-up (``emoreason vision-warmup``) from the untrained model on the arm's CoT dataset (the
    control's: its deranged clips). Returns the warmed-up model: one this config finished is reused; one done with
    other options is refused (the stage's own check, made here before anything runs)."""
    from emoreason.config import load_config
    from emoreason.training.vision_warmup import VisionWarmupConfig, completed

    args = [f"model_name_or_path={model}", f"dataset_name={data}", f"output_dir={out / arm / 'vision_warmup'}",
            f"seed={plan.seed}", *[f"{k}={v}" for k, v in plan.frame_policy.items()], *plan.vision_warmup_overrides]
    cfg = load_config(VisionWarmupConfig, ROOT / plan.vision_warmup_recipe, args)  # an unknown key fails here
    if completed(cfg) is None:
        runner.emoreason(f"{arm}_vision_warmup", "vision-warmup", "--config", plan.vision_warmup_recipe, *args,
                         threads=threads)
    return Path(cfg.output_dir) / "final"


# --- the run -------------------------------------------------------------------------------------------------------
def run(plan: Plan, out: Path, dry: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(asdict(plan), indent=2) + "\n")
    runner = Runner(out, dry)
    started = time.time()
    model, synth, cot = out / "model", out / "synthfacs", out / "cot"

    if not (model / "config.json").exists():
        runner.emoreason("tiny_model", "tiny-model", "--family", plan.family, "--out", str(model),
                         "--seed", str(plan.seed), *plan.model_size)
    if not (synth / "manifest.jsonl").exists():
        runner.emoreason("synth", "synth", "--out", str(synth), "--clips", str(plan.clips), "--size", str(plan.size),
                         "--frames", str(plan.frames), "--difficulty", plan.difficulty, "--emotions", "basic",
                         "--profile", plan.profile, "--seed", str(plan.seed))
    if not (cot / "hf").exists():
        tasks = ", ".join(f"{k}: {v}" for k, v in plan.cot_tasks.items())
        extra = [f"tasks={{{tasks}}}"] if set(plan.cot_tasks) != {"cot"} else []
        runner.emoreason("synth_cot", "synth-cot", "--config", "data_pipelines/configs/synthfacs.yaml",
                         f"dataset_root={synth}", f"output_dir={cot}", *extra)
    arms = {"sft": cot / "hf"} if plan.train_sft else {}
    if plan.control:
        control_data = out / "cot_shuffled"
        if not control_data.exists() and not dry:
            print(f"control data: {shuffled_copy(cot / 'hf', control_data, seed=plan.seed)}", flush=True)
        arms["control"] = control_data
    roots = dict.fromkeys(arms, synth)
    if plan.label_coded:
        coded_synth, coded_data = out / "synthfacs_label_coded", out / "cot_label_coded"
        if not coded_data.exists() and not dry:
            print(f"positive control data: {label_coded_copy(synth, cot / 'hf', coded_synth, coded_data, plan.seed)}",
                  flush=True)
        arms["label_coded"], roots["label_coded"] = coded_data, coded_synth

    policy_overrides = [f"{k}={v}" for k, v in plan.frame_policy.items()]
    frames_override = f"frames={frames_yaml(plan.frame_policy)}"
    # a dry run prints each arm's commands in turn (side by side they would interleave)
    jobs = 1 if dry else max(1, min(plan.arm_jobs, len(arms)))
    threads = thread_share(jobs)
    if not dry:  # one line per invocation: a resumed run's stages may come from more than one commit
        with (out / "provenance.jsonl").open("a") as handle:
            handle.write(json.dumps(provenance(jobs, threads)) + "\n")

    def train_arm(arm: str, data: Path) -> Path:
        previous = model
        if plan.vision_warmup:
            previous = warm_up(runner, plan, model, out, arm, data, threads)
        for stage in plan.sft_stages:
            stage_dir = out / arm / stage["name"]
            if not (stage_dir / "final" / "config.json").exists():
                runner.emoreason(f"{arm}_{stage['name']}", "sft", "--config", stage["recipe"],
                                 f"model_name_or_path={previous}", f"dataset_name={data}", f"output_dir={stage_dir}",
                                 f"seed={plan.seed}", *policy_overrides, *stage.get("overrides", []), threads=threads)
            previous = stage_dir / "final"
        return previous

    # each arm's stages in order, the arms side by side
    finals = side_by_side(runner, {arm: partial(train_arm, arm, data) for arm, data in arms.items()}, jobs)

    def evaluate(name: str, model_dir: Path, limit: int | None, root: Path = synth) -> Path:
        run_dir = out / "eval" / name
        if not (run_dir / "metrics.json").exists():
            args = ["eval", "--benchmark", "synthfacs", "--model", str(model_dir), "--root", str(root),
                    "--out", str(run_dir), frames_override, *([f"task={plan.eval_task}"] if plan.eval_task != "cot" else [])]
            runner.emoreason(f"eval_{name}", *args, *(["--limit", str(limit)] if limit else []))
        return run_dir

    results: dict = {}
    records = [] if dry else test_records(synth, plan.eval_limit)
    for arm, final in finals.items():
        run_dir = evaluate(arm, final, plan.eval_limit, roots[arm])
        if not dry:
            results[arm] = summarise(run_dir, records)
    if plan.eval_untrained:
        run_dir = evaluate("untrained", model, plan.eval_limit)
        if not dry:
            results["untrained"] = summarise(run_dir, records)

    # held-out WAR over SFT steps: each arm's checkpoints of its last stage, on a subset
    curves: dict = {"loss": {}, "war": {}, "rewards": []}
    curve_records = [] if dry else test_records(synth, plan.curve_limit)
    for arm in finals:
        last = out / arm / plan.sft_stages[-1]["name"]
        curves["loss"][arm] = [] if dry else [dict(r, stage=s["name"]) for s in plan.sft_stages
                                              for r in history(out / arm / s["name"])]
        points = []
        checkpoints = sorted(last.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for ckpt in checkpoints if plan.curve_limit else []:  # curve_limit 0: no held-out curve
            run_dir = evaluate(f"{arm}_curve_{ckpt.name}", ckpt, plan.curve_limit, roots[arm])
            if not dry:
                points.append({"step": int(ckpt.name.split("-")[1]),
                               "war": summarise(run_dir, curve_records)["war"]})
        curves["war"][arm] = points

    if plan.probe_train_clips and not dry:
        results["vision_probe"] = {name: probe(directory, roots.get(name, synth), plan) for name, directory in
                                   (("untrained", model), *finals.items())}

    if plan.grpo and "sft" in finals:
        grpo_dir = out / "grpo"
        if not (grpo_dir / "final" / "config.json").exists():
            runner.emoreason("grpo", "grpo", "--config", plan.grpo_recipe, f"model_name_or_path={finals['sft']}",
                             f"dataset_name={cot / 'hf'}", f"output_dir={grpo_dir}", f"seed={plan.seed}", *policy_overrides,
                             *plan.grpo_overrides)
        run_dir = evaluate("grpo", grpo_dir / "final", plan.eval_limit)
        if not dry:
            results["grpo"] = summarise(run_dir, records)
            results["grpo_vs_sft"] = paired_gain(out / "eval" / "sft", run_dir, records, plan.bootstrap_resamples,
                                                 plan.seed)
            curves["rewards"] = history(grpo_dir)

    if dry:
        return {}
    plot_curves(out / "learning_curves.png", curves)
    runs = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    metrics = {"plan": asdict(plan), "provenance": runs, "chance": CHANCE, "results": results,
               "curves": curves,
               "stage_seconds": runner.timings, "wall_seconds": time.time() - started,
               "targets": check_targets(results)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(report(metrics))
    return metrics


def paired_gain(base_run: Path, other_run: Path, records, resamples: int = 10000, seed: int = 0) -> dict:
    """``other_run`` − ``base_run`` (two ``emoreason eval`` output folders on the same test records), clip by clip:
    the paired bootstrap 95 % CI of the WAR and of the cited AUs' micro F1 (the GRPO-after-SFT comparison)."""
    from emoreason.evaluation.significance import accuracy, cited_au_f1, paired_bootstrap, per_sample

    a, b = per_sample(base_run, records), per_sample(other_run, records)
    return {"war": paired_bootstrap(a, b, accuracy, resamples, seed),
            "au_f1": paired_bootstrap(a, b, cited_au_f1, resamples, seed)}


def provenance(jobs: int, threads: int | None) -> dict:
    """What runs this invocation: the code's commit and whether the tree had changes (None: git unavailable), the
    CPUs, the arms' share (threads None: inherited, i.e. torch's default or OMP_NUM_THREADS)."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--", "bench", "emoreason", "recipes", "data_pipelines", "pyproject.toml")
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status), "cpus": usable_cpus(), "arm_jobs": jobs,
            "threads_per_arm": threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def check_targets(results: dict) -> dict:
    """Every target of issue 18, each True (met), False (missed) or None (not measured by this plan: no such arm or
    stage, or short answers that cite no AUs) — never silently absent."""
    sft, control = results.get("sft"), results.get("control")

    def measured(value, test):
        return None if value is None else bool(test(value))

    checks = {
        "sft_war>=0.60": measured(sft and sft.get("war"), lambda v: v >= TARGETS["sft_war"]),
        "sft_cited_au_f1>=0.60": measured(sft and sft.get("au_f1"), lambda v: v >= TARGETS["sft_au_f1"]),
        "sft_hallucination<=0.20": measured(sft and sft.get("hallucination_rate"),
                                            lambda v: v <= TARGETS["sft_hallucination_max"]),
        "sft_ci_excludes_chance": measured(sft, lambda r: r["war_ci95"][0] > r.get("chance_bar", CHANCE)),
        "control_within_5_points_of_chance": measured(
            control, lambda r: abs(r["war"] - CHANCE) <= TARGETS["control_margin"]),
        "grpo_gain_ci_excludes_0": measured(
            results.get("grpo_vs_sft"), lambda cmp: any(c["ci_low"] > 0 for c in cmp.values())),
    }
    if results.get("label_coded") is not None:  # the path carries a label it can see (a diagnostic arm)
        checks["positive_control_ci_excludes_chance"] = (results["label_coded"]["war_ci95"][0]
                                                         > results["label_coded"].get("chance_bar", CHANCE))
    return checks


EXIT_CODES = """exit codes:
  0  every target met
  1  the run failed (a stage's error, named with its log)
  2  bad command line
  3  a target missed
  4  no target missed, some not measured by this plan (e.g. --scale warmup: short answers cite no AUs, no GRPO)"""


def exit_code(targets: dict) -> int:
    """0: every target met; 3: one missed; 4: none missed, some not measured by this plan (EXIT_CODES)."""
    values = list(targets.values())
    return 3 if False in values else 4 if None in values else 0


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"  # — : not measured (e.g. short answers cite no AUs)


def report(metrics: dict) -> str:
    rows = ["| model | n | WAR (95 % CI) | UAR | cited-AU F1 | hallucination | format valid |",
            "|---|---|---|---|---|---|---|"]
    for name, r in metrics["results"].items():
        if "war" not in r:
            continue
        lo, hi = r["war_ci95"]
        rows.append(f"| {name} | {r['n']} | {100 * r['war']:.1f} ({100 * lo:.1f}–{100 * hi:.1f}) | "
                    f"{100 * r['uar']:.1f} | {_percent(r.get('au_f1'))} | {_percent(r.get('hallucination_rate'))} | "
                    f"{_percent(r.get('format_valid'))} |")
    lines = [*rows, f"chance: {100 * metrics['chance']:.1f} % (8 balanced classes)"]
    for name, p in (metrics["results"].get("vision_probe") or {}).items():
        lo, hi = p["test_ci95"]
        lines.append(f"vision probe ({name}): linear probe on the video tokens, {100 * p['test_accuracy']:.1f} % "
                     f"({100 * lo:.1f}–{100 * hi:.1f}) on {p['test_n']} test clips, fitted on {p['train_n']}")
    cmp = metrics["results"].get("grpo_vs_sft")
    if cmp:
        for key, c in cmp.items():
            lines.append(f"GRPO − SFT {key}: {100 * c['delta']:+.1f} points, paired bootstrap 95 % CI "
                         f"[{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]")
    verdicts = {True: "ok", False: "MISSED", None: "not measured"}
    lines.append("targets: " + ", ".join(f"{k} {verdicts[v]}" for k, v in metrics["targets"].items()))
    lines.append(f"wall time {metrics['wall_seconds'] / 60:.1f} min; per stage (s): "
                 + ", ".join(f"{k} {v:.0f}" for k, v in metrics["stage_seconds"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__ + "\n" + EXIT_CODES)
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--quick", action="store_true", help="the shortened run of the slow test")
    parser.add_argument("--scale", choices=("cpu", "gpu", "warmup", "cot"), default="cpu",
                        help="gpu: larger model and data; warmup: posed faces, one video token, vision warm-up; "
                             "cot: warmup, then CoT rows and GRPO, scored with the CoT question")
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value", help="override Plan fields")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--compare", nargs=2, metavar=("BASE_EVAL", "OTHER_EVAL"),
                        help="no run: OTHER − BASE for two `emoreason eval` folders on the test split of --synth, "
                             "clip by clip (paired bootstrap 95 %% CIs of WAR and cited-AU F1)")
    parser.add_argument("--synth", help="with --compare: the SynthFACS folder both evals scored")
    args = parser.parse_args(argv)
    from emoreason.config import load_config

    if args.compare:
        if not args.synth:
            parser.error("--compare needs --synth (the SynthFACS folder both evals scored)")
        records = test_records(Path(args.synth), None)
        gain = paired_gain(Path(args.compare[0]), Path(args.compare[1]), records)
        for key, c in gain.items():
            print(f"{args.compare[1]} − {args.compare[0]}, {key}: {100 * c['delta']:+.1f} points, paired bootstrap "
                  f"95 % CI [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] (n = {c['n']})")
        print(json.dumps(gain))
        return 0

    base = preset("quick" if args.quick else args.scale if args.scale in ("gpu", "warmup", "cot") else "full")
    plan = load_config(Plan, None, args.set, **asdict(base))
    metrics = run(plan, Path(args.out), dry=args.dry_run)
    return 0 if args.dry_run else exit_code(metrics["targets"])


if __name__ == "__main__":
    sys.exit(main())
