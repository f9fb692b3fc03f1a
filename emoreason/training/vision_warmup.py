"""Vision warm-up: the vision tower + merger trained alone on the clips' labels (and AUs), the model SFT starts from.

A randomly initialised video-LLM does not learn to recognise faces through SFT alone: the language model learns the
answers' text long before the video carries any signal (docs/benchmarks.md, "SFT above chance on CPU"). The warm-up
gives the tower a dense, direct signal first: a linear emotion head (cross-entropy) and a multi-label AU head
(binary cross-entropy, weight ``au_loss_weight``; the AU-perception curriculum's signal, VidEmo / Emotion-LLaMA's
multi-task rows, without the text) on the clip's mean-pooled video tokens — the tokens the language model receives.
Only ``visual`` trains (the tower, its merger and, for Qwen3-VL, its deepstack mergers); the heads are dropped, the
language model is saved as loaded, and SFT then starts from ``output_dir/final``.

It reads the rows SFT reads (a ``synth-cot`` dataset directory), one clip per media file (the rows of one clip's
tasks share it), through the same media loading and the model's own processor under the same frame policy, so the
tower sees exactly what SFT will feed it. AU targets come from rows with ``au_observed`` only; a clip of a
label-only corpus gets no AU loss (masked), and a dataset without observed AUs trains the emotion head alone.

A clip that does not load is skipped with a warning naming the file and the reason, and listed in
``warmup_summary.json``; the run goes on. Rerun with the same config in the same ``output_dir``: returns the saved
model at once, unless the dataset's files or the source model changed since (refused, as is another config where a
run finished). A killed or failed run restarts from the beginning, with any config (it is minutes long; it keeps no
checkpoints).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emoreason.config import ConfigError

log = logging.getLogger(__name__)

SUMMARY_FILE = "warmup_summary.json"
CONFIG_FILE = "warmup_config.json"
# encoded clips kept in memory between epochs up to this size; the rest are loaded again each epoch (a 7B model's
# 16-frame clips are ~40 MB each)
CACHE_BYTES = 4 << 30
_EVAL_BATCH = 64


def _sft_default(name: str) -> Any:
    """SFT's default for a frame-policy field (one source: ``EmoreasonArguments``)."""
    from emoreason.training.recipe import EmoreasonArguments

    return EmoreasonArguments.__dataclass_fields__[name].default


@dataclass
class VisionWarmupConfig:
    """``emoreason vision-warmup`` (``recipes/*/warmup/*.yaml`` + ``key=value`` overrides). Keys shared with the SFT
    recipes mean what they mean there (the frame policy: ``emoreason.training.frame_policy``)."""

    model_name_or_path: str = ""
    dataset_name: str = ""  # a synth-cot dataset directory (save_to_disk) or JSONL file, as SFT reads
    output_dir: str = ""
    dataset_train_split: str = "train"
    dataset_eval_split: str | None = "val"  # accuracy per epoch on it; None / "": none (a split it lacks: an error)
    fps: float = field(default_factory=lambda: _sft_default("fps"))
    max_frames: int = field(default_factory=lambda: _sft_default("max_frames"))
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    num_train_epochs: int = 30
    learning_rate: float = 1e-3
    per_device_train_batch_size: int = 32
    au_loss_weight: float = 3.0  # 0: the emotion head alone
    seed: int = 0

    def validate(self) -> None:
        missing = [k for k in ("model_name_or_path", "dataset_name", "output_dir") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"vision warm-up: set {', '.join(missing)}")
        if self.num_train_epochs < 1 or self.per_device_train_batch_size < 1:
            raise ConfigError("vision warm-up: num_train_epochs and per_device_train_batch_size must be >= 1")
        if self.learning_rate <= 0 or self.au_loss_weight < 0:
            raise ConfigError("vision warm-up: learning_rate must be > 0 and au_loss_weight >= 0")
        if self.dataset_eval_split and self.dataset_eval_split == self.dataset_train_split:
            raise ConfigError(f"vision warm-up: dataset_eval_split is the training split ({self.dataset_train_split!r}):"
                              " its accuracy would not be held out; name another split, or set dataset_eval_split= "
                              "(empty) for none")


# --- clips ---------------------------------------------------------------------------------------------------------
@dataclass
class Clip:
    """One media file of the dataset with its label and AU targets (None: no observed AUs)."""

    id: str
    kind: str  # video | image
    path: str
    emotion: str
    aus: frozenset[int] | None
    row: dict  # the first row of the clip: its prompt and media columns, as SFT encodes them


def clips_of(rows, split: str) -> tuple[list[Clip], list[dict], list[dict]]:
    """The split's clips, one per media file (the first row's label; a later row of the clip with observed AUs
    supplies them); the clips skipped (their rows disagree on the label) and, apart, the rows skipped (no media or no
    label: a row, not a clip — the clip's other rows still count), each with the reason, all logged."""
    from emoreason.training.data import row_media

    clips: dict[str, Clip] = {}
    skipped, skipped_rows, conflicts = [], [], {}
    for row in rows:
        kind, path = row_media(row)
        row_id = str(row.get("id", "?"))
        if kind is None or not row.get("emotion"):
            skipped_rows.append({"id": row_id, "clip": path, "split": split, "reason": "the row names no video or "
                                 "image" if kind is None else "the row has no emotion"})
            continue
        aus = frozenset(int(a) for a in row.get("aus") or []) if row.get("au_observed") else None
        clip = clips.get(path)
        if clip is None:
            clips[path] = Clip(str(row.get("clip_id") or row_id), kind, path, row["emotion"], aus, row)
        elif clip.emotion != row["emotion"]:
            conflicts.setdefault(path, f"rows of this clip disagree on its label ({clip.emotion!r} in "
                                       f"{clip.row.get('id')}, {row['emotion']!r} in {row_id})")
        elif clip.aus is None and aus is not None:
            clip.aus = aus
    for path, reason in conflicts.items():
        skipped.append({"id": clips.pop(path).id, "clip": path, "split": split, "reason": reason})
        log.warning("skipping %s clip %s: %s", split, path, reason)
    if skipped_rows:  # one line, not one per row: a label-less corpus has thousands (all are in the summary)
        log.warning("skipping %d %s row(s) without media or label, e.g. %s", len(skipped_rows), split,
                    "; ".join(f"{r['id']}: {r['reason']}" for r in skipped_rows[:3]))
    return list(clips.values()), skipped, skipped_rows


@dataclass
class Encoded:
    """What the processor hands the tower for one clip."""

    kind: str
    pixels: Any  # torch.Tensor: pixel_values_videos | pixel_values
    grid: Any  # torch.Tensor: video_grid_thw | image_grid_thw


def encode_clip(processor, kind: str, frames, messages: list[dict] | None = None) -> Encoded:
    """One clip through ``emoreason.inference.encode_batch`` as SFT and inference encode it (an audio model's
    processor: video only — the warm-up trains the vision path)."""
    from emoreason.inference import encode_batch
    from emoreason.reasoning import build_messages

    messages = messages or build_messages(frames.path, kind)
    inputs = encode_batch(processor, [messages], [frames])
    if kind == "video":
        return Encoded(kind, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    return Encoded(kind, inputs["pixel_values"], inputs["image_grid_thw"])


class ClipStore:
    """Encoded clips (a sequence): each encoded once up front (which finds the clips that do not load), kept in
    memory up to ``CACHE_BYTES``, the rest loaded again when a batch needs them."""

    def __init__(self, load: Callable[[Clip], Encoded]):
        self.load, self.clips, self.kept, self.bytes = load, [], [], 0

    def add(self, clip: Clip, encoded: Encoded) -> None:
        size = encoded.pixels.numel() * encoded.pixels.element_size()
        keep = self.bytes + size <= CACHE_BYTES
        self.clips.append(clip)
        self.kept.append(encoded if keep else None)
        self.bytes += size if keep else 0

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.kept[index] or self.load(self.clips[index])


# --- the model's vision path -----------------------------------------------------------------------------------------
def vision_owner(model):
    """The module that holds ``visual`` and ``get_video_features`` (Qwen-VL's inner model, the Omni thinker)."""
    inner = getattr(model, "model", None)
    owner = inner if inner is not None and getattr(inner, "visual", None) is not None else model
    if getattr(owner, "visual", None) is None or not hasattr(owner, "get_video_features"):
        raise ValueError(f"{type(model).__name__} has no vision tower (visual) to warm up")
    return owner


def pooled_tokens(model, clips: Sequence[Encoded]):
    """(n, width): each clip's mean video token as the language model receives it (the merger's output; Qwen3-VL
    adds each deepstack level's mean, so its deepstack mergers train too)."""
    import torch

    owner = vision_owner(model)
    device = next(owner.visual.parameters()).device
    out: list = [None] * len(clips)
    for kind, features in (("video", owner.get_video_features), ("image", owner.get_image_features)):
        idx = [i for i, c in enumerate(clips) if c.kind == kind]
        if not idx:
            continue
        result = features(torch.cat([clips[i].pixels for i in idx]).to(device),
                          torch.cat([clips[i].grid for i in idx]).to(device))
        levels = getattr(result, "deepstack_features", None) or []
        for j, i in enumerate(idx):
            out[i] = result.pooler_output[j].float().mean(0) + sum(level[j].float().mean(0) for level in levels)
    return torch.stack(out)


def masked_au_loss(logits, targets, observed):
    """Binary cross-entropy over the AU vocabulary, averaged over the clips whose AUs were observed; clips without
    (label-only corpora) add nothing, and a batch with none gives 0 (with a graph, so backward still runs)."""
    import torch

    per_clip = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1)
    weights = observed.to(per_clip.dtype)
    return (per_clip * weights).sum() / weights.sum().clamp(min=1.0)


def train_tower(model, train: Sequence[Encoded], train_y, train_aus, held_out: dict[str, tuple[Sequence[Encoded],
                object]], *, epochs: int, lr: float, batch_size: int, au_weight: float, seed: int,
                au_observed=None, report: Callable[[str], None] | None = None, pool: Callable = pooled_tokens,
                module=None) -> list[dict]:
    """AdamW on the vision module (tower, merger, deepstack mergers) + a linear emotion head + a linear AU head on
    :func:`pooled_tokens`; accuracy with Wilson 95 % CIs on each held-out split (name → (clips, labels)) after each
    epoch. ``train_aus``: (n, AUs) targets (0 columns or ``au_weight`` 0: no AU head); ``au_observed``: (n,) bool,
    clips whose AU targets count (None: all). Returns one entry per epoch; ``report`` gets one line per epoch.
    Another encoder (the Omni audio warm-up, ``bench/audio_warmup.py``): ``pool(model, clips)`` → (n, width) its
    pooled tokens, ``module`` the encoder it trains (default: the vision tower).

    The trained module runs in float32 and is cast back to its dtype at the end: a checkpoint loaded in bf16 (dtype
    auto, on CUDA) would otherwise take pure-bf16 AdamW steps, whose small updates round away."""
    visual = module if module is not None else vision_owner(model).visual
    dtype = next(visual.parameters()).dtype
    visual.float()
    try:
        return _train_tower(model, visual, train, train_y, train_aus, held_out, epochs=epochs, lr=lr,
                            batch_size=batch_size, au_weight=au_weight, seed=seed, au_observed=au_observed,
                            report=report, pool=pool)
    finally:
        visual.to(dtype)


def _train_tower(model, visual, train, train_y, train_aus, held_out, *, epochs, lr, batch_size, au_weight, seed,
                 au_observed, report, pool) -> list[dict]:
    import torch

    from emoreason.evaluation.significance import wilson_interval

    torch.manual_seed(seed)
    device = next(visual.parameters()).device
    with torch.no_grad():  # the heads' width: the tokens' own (the text model's hidden size)
        width = pool(model, [train[0]]).shape[1]
    head = torch.nn.Linear(width, int(train_y.max()) + 1).to(device)
    use_aus = bool(au_weight) and train_aus.shape[1] > 0
    au_head = torch.nn.Linear(width, train_aus.shape[1]).to(device) if use_aus else None
    observed = torch.ones(len(train), dtype=torch.bool) if au_observed is None else au_observed
    params = [*visual.parameters(), *head.parameters(), *(au_head.parameters() if au_head is not None else ())]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    history = []
    for epoch in range(1, epochs + 1):
        started, total, correct = time.time(), 0.0, 0
        visual.train()
        order = torch.randperm(len(train)).tolist()
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            features = pool(model, [train[i] for i in idx])
            labels = train_y[idx].to(device)
            logits = head(features)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            if au_head is not None:
                loss = loss + au_weight * masked_au_loss(au_head(features), train_aus[idx].to(device),
                                                         observed[idx].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == labels).sum())
        visual.eval()
        entry = {"epoch": epoch, "loss": total / len(train), "train_accuracy": correct / len(train)}
        line = f"epoch {epoch}/{epochs}: loss {total / len(train):.3f}  train {100 * correct / len(train):.1f} %"
        for split, (clips, split_labels) in held_out.items():
            with torch.no_grad():
                predicted = torch.cat([head(pool(model, clips[s:s + _EVAL_BATCH])).argmax(1).cpu()
                                       for s in range(0, len(clips), _EVAL_BATCH)])
            hits = int((predicted == split_labels).sum())
            low, high = wilson_interval(hits, len(clips))
            entry.update({f"{split}_accuracy": hits / len(clips), f"{split}_ci95": [low, high]})
            line += f"  {split} {100 * hits / len(clips):.1f} % [{100 * low:.1f}–{100 * high:.1f}]"
        history.append({**entry, "seconds": time.time() - started})
        (report or print)(line)
    return history


# --- the stage -------------------------------------------------------------------------------------------------------
def _local(path: str) -> str:
    """An existing local path, absolute (``./m`` and ``m`` name one model); anything else (a hub name) as written."""
    return str(Path(path).resolve()) if path and Path(path).exists() else path


def config_key(cfg: VisionWarmupConfig) -> dict:
    """The config as a run records it: JSON types, local paths resolved."""
    key = json.loads(json.dumps(asdict(cfg)))
    for name in ("model_name_or_path", "dataset_name", "output_dir"):
        key[name] = str(Path(key[name]).resolve()) if name == "output_dir" else _local(key[name])
    return key


def _files_stamp(root: Path, names: Sequence[Path]) -> list:
    return [[str(f.relative_to(root)) if f != root else f.name, f.stat().st_size, f.stat().st_mtime_ns]
            for f in names if f.is_file()]


def _files_digest(root: Path, names: Sequence[Path]) -> list:
    import hashlib

    def sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    return [[str(f.relative_to(root)) if f != root else f.name, sha256(f)] for f in names if f.is_file()]


def inputs_key(cfg: VisionWarmupConfig) -> dict:
    """What the run read, beyond its config: the dataset's files by content (a synth-cot run resumed into the same
    directory rewrites identical files — the demo and a resumed pipeline do — so times would refuse the same data) and
    the source model (its config.json's sha256 and its weights' size and time)."""
    import hashlib

    data = Path(cfg.dataset_name)
    # datasets' own cache files (``cache-*.arrow``, written beside the data by a later ``map``) are not the data
    dataset = (_files_digest(data, sorted(f for f in data.rglob("*") if not f.name.startswith("cache-")))
               if data.is_dir() else _files_digest(data, [data]) if data.is_file() else None)
    model = Path(cfg.model_name_or_path)
    config = model / "config.json"
    return {"dataset": dataset,
            "model_config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
            "model_weights": _files_stamp(model, sorted(model.glob("*.safetensors")) + sorted(model.glob("*.bin")))
            if model.is_dir() else None}


def completed(cfg: VisionWarmupConfig) -> Path | None:
    """``output_dir/final`` when a run with this config, on the same data and source model, finished there; None when
    none finished (nothing, or a killed or failed run of any config: the next run overwrites it); ConfigError when a
    finished run of another config, or of data or a model that has changed since, is there."""
    out = Path(cfg.output_dir)
    summary = out / SUMMARY_FILE
    if not (summary.is_file() and (out / "final" / "config.json").is_file()):
        return None
    data = json.loads(summary.read_text())
    if not data.get("completed"):
        return None
    stored = dict(data.get("config") or {})
    for name in ("model_name_or_path", "dataset_name"):  # a run recorded before paths were resolved
        stored[name] = _local(stored.get(name, ""))
    wanted_config = config_key(cfg)
    stored["output_dir"] = wanted_config["output_dir"]  # where the run lies is not what it did: a moved one is reused
    if stored != wanted_config:
        raise ConfigError(f"{out} holds a finished vision warm-up with a different config ({summary}); use a new "
                          "output_dir to change settings, or the same config to reuse it")
    wanted, recorded = inputs_key(cfg), data.get("inputs")
    if recorded != wanted:
        what = ("its inputs were not recorded (an earlier checkout)" if recorded is None else
                ", ".join(k for k in wanted if recorded.get(k) != wanted[k]) + " changed since")
        raise ConfigError(f"{out} holds a finished vision warm-up of {cfg.dataset_name} and {cfg.model_name_or_path} "
                          f"as they were then ({what}); use a new output_dir (or delete this one) to warm up on them "
                          "as they are now")
    return out / "final"


def _load_split(cfg: VisionWarmupConfig, split: str):
    from emoreason.training.data import load_dataset_split

    data = load_dataset_split(cfg.dataset_name, split)
    if "emotion" not in data.column_names:
        raise ValueError(f"{cfg.dataset_name} ({split}): no 'emotion' column (has {', '.join(data.column_names)}); "
                         "the warm-up trains on the rows' emotion labels (a dataset from `emoreason synth-cot`)")
    return data


def _eval_rows(cfg: VisionWarmupConfig):
    """The eval split's rows; None only when none is asked for (an empty ``dataset_eval_split``): a split the
    dataset lacks (a typo such as ``vall``) is an error, not a run without its held-out figure."""
    if not cfg.dataset_eval_split:
        return None
    try:
        return _load_split(cfg, cfg.dataset_eval_split)
    except KeyError as exc:
        raise ConfigError(f"dataset_eval_split={cfg.dataset_eval_split!r}: {exc.args[0] if exc.args else exc}; name "
                          "a split it has, or set dataset_eval_split= (empty) to train without a held-out figure"
                          ) from exc


def _encode_all(processor, policy, clips: list[Clip], skipped: list[dict], what: str) -> ClipStore:
    """Every clip that loads, encoded; the rest go to ``skipped`` with the file and the reason."""
    from emoreason.training.data import SampleMediaError, load_row_media, with_media
    from emoreason.video import MediaError

    def load(clip: Clip) -> Encoded:
        messages = with_media(list(clip.row["prompt"]), clip.kind, clip.path) if clip.row.get("prompt") else None
        return encode_clip(processor, clip.kind, load_row_media(clip.row, policy), messages)

    store = ClipStore(load)
    for clip in clips:
        try:
            store.add(clip, load(clip))
        except (SampleMediaError, MediaError) as exc:
            skipped.append({"id": clip.id, "clip": clip.path, "split": what, "reason": str(exc)})
            log.warning("skipping %s clip %s (%s): %s", what, clip.id, clip.path, exc)
    return store


def chance_of(classes: int, labels: Sequence[str]) -> dict:
    """The project's chance bar for an accuracy over these clips' labels (the eval split's; the training split's
    when there is none): max(1 / classes, the most frequent label's share) (``emoreason.evaluation.significance``)."""
    from collections import Counter

    from emoreason.evaluation.significance import chance_bar

    bar, majority = chance_bar(classes, Counter(labels).values())
    return {"chance": 1 / classes, "majority_rate": majority, "chance_bar": bar}


def save_warm_model(model, processor, policy, source: Path, final: Path) -> None:
    """The model (heads dropped: they are not part of it), its processor, its frame policy and the embedded model's
    build record, written beside ``final`` and moved in place (a kill never leaves a half-written final)."""
    from emoreason.models import save_frame_policy
    from emoreason.models.omni import is_omni, to_composite

    partial = final.with_name(final.name + ".tmp")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    processor.save_pretrained(str(partial))
    save_frame_policy(partial, policy)
    record = source / "emoreason_model.json"  # the embedded model's build record travels with it
    if record.is_file():
        shutil.copyfile(record, partial / record.name)
    if is_omni(partial):  # the thinker class saves its own layout; vLLM serves only the released composite one
        to_composite(partial)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)


def run_vision_warmup(cfg: VisionWarmupConfig) -> Path:
    """Warm the vision path of ``cfg.model_name_or_path`` up on ``cfg.dataset_name``; returns ``output_dir/final``
    (at once when this config already finished there). See the module docstring."""
    import torch

    from emoreason.models import check_model_dir, load_model_and_processor
    from emoreason.training.loading import frame_policy

    cfg.validate()
    done = completed(cfg)
    if done is not None:
        log.info("vision warm-up already done with this config: %s", done)
        return done
    source = check_model_dir(cfg.model_name_or_path)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = inputs_key(cfg)  # before anything is read: a change while it runs shows as a change next time
    (out / CONFIG_FILE).write_text(json.dumps({"config": config_key(cfg), "inputs": inputs}, indent=2) + "\n")
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # an unfinished run's leftovers (any config): this run restarts
    started = time.time()

    notes: list[str] = []
    train_clips, skipped, skipped_rows = clips_of(_load_split(cfg, cfg.dataset_train_split), cfg.dataset_train_split)
    eval_data = _eval_rows(cfg)
    eval_clips, eval_skipped, eval_skipped_rows = (clips_of(eval_data, cfg.dataset_eval_split)
                                                   if eval_data is not None else ([], [], []))
    skipped += eval_skipped
    skipped_rows += eval_skipped_rows
    shared = sorted({c.path for c in train_clips} & {c.path for c in eval_clips})
    if shared:  # a JSONL without a split column, or splits cut by row rather than by clip: not held out
        notes.append(f"{len(shared)} eval clip(s) are also training clips (the eval figure is not held out for "
                     f"them), e.g. {shared[:3]}")
        log.warning("%s", notes[-1])
    labels = sorted({c.emotion for c in train_clips})
    if len(labels) < 2:
        raise ValueError(f"{cfg.dataset_name} ({cfg.dataset_train_split}): {len(labels)} emotion class(es) "
                         f"{labels}; the warm-up's emotion head needs at least 2")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = load_model_and_processor(source, device=device)
    vision_owner(model)  # a model without a vision tower is refused before any clip is loaded
    policy = frame_policy(cfg, processor)
    train = _encode_all(processor, policy, train_clips, skipped, cfg.dataset_train_split)
    held = _encode_all(processor, policy, eval_clips, skipped, cfg.dataset_eval_split or "eval")
    train_clips, eval_clips = train.clips, held.clips
    classes = sorted({c.emotion for c in train_clips})
    if len(classes) < 2:
        raise ValueError(f"{cfg.dataset_name}: fewer than 2 emotion classes left after skipping unreadable clips "
                         f"({len(skipped)} skipped: {skipped[:5]})")
    aus = sorted({a for c in train_clips if c.aus for a in c.aus})
    observed = torch.tensor([c.aus is not None for c in train_clips])
    targets = torch.tensor([[float(a in (c.aus or ())) for a in aus] for c in train_clips]).reshape(len(train_clips),
                                                                                                   len(aus))
    au_head_used = bool(cfg.au_loss_weight) and bool(aus) and bool(observed.any())
    if not au_head_used:
        notes.append("AU head unused: " + ("au_loss_weight is 0" if not cfg.au_loss_weight else
                                           "no training clip has observed AUs (au_observed); an emotion-only "
                                           "synth-cot run computes none: add its cot or au_perception task"))
        (log.warning if cfg.au_loss_weight else log.info)("%s; the emotion head trains alone", notes[-1])
    index = {label: i for i, label in enumerate(classes)}
    unseen = sorted({c.emotion for c in eval_clips} - set(index))
    if unseen:  # scored as misses: the head cannot name a class it never trained on
        notes.append(f"eval classes without a training clip (always missed): {unseen}")
    held_out = {"eval": (held, torch.tensor([index.get(c.emotion, -1) for c in eval_clips]))} if eval_clips else {}
    log.info("vision warm-up: %d train clips (%d with observed AUs), %d eval clips, %d skipped, %d classes, AU head "
             "over %d AUs (weight %s), on %s", len(train_clips), int(observed.sum()), len(eval_clips), len(skipped),
             len(classes), len(aus), cfg.au_loss_weight if au_head_used else 0, device)
    history = train_tower(model, train, torch.tensor([index[c.emotion] for c in train_clips]), targets, held_out,
                          epochs=cfg.num_train_epochs, lr=cfg.learning_rate,
                          batch_size=cfg.per_device_train_batch_size,
                          au_weight=cfg.au_loss_weight if au_head_used else 0.0, seed=cfg.seed,
                          au_observed=observed, report=log.info)
    save_warm_model(model, processor, policy, source, out / "final")
    last = history[-1]
    summary = {
        "config": config_key(cfg), "inputs": inputs, "completed": True, "device": device,
        "frame_policy": asdict(policy), "classes": classes, "au_vocabulary": aus, "au_head_used": au_head_used,
        "clips": {"train": len(train_clips), "train_au_observed": int(observed.sum()), "eval": len(eval_clips),
                  "skipped": len(skipped)},
        "rows": {"skipped": len(skipped_rows)},
        "clips_used": {"train": [c.id for c in train_clips], "eval": [c.id for c in eval_clips]},
        "skipped": skipped, "skipped_rows": skipped_rows, "notes": notes, "history": history,
        "final": {"loss": last["loss"], "train_accuracy": last["train_accuracy"],
                  **({"eval_accuracy": last["eval_accuracy"], "eval_ci95": last["eval_ci95"],
                      "eval_n": len(eval_clips)} if "eval_accuracy" in last else {}),
                  **chance_of(len(classes), [c.emotion for c in (eval_clips or train_clips)])},
        "seconds": time.time() - started,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return out / "final"
