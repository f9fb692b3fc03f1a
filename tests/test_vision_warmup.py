"""emoreason vision-warmup: the vision tower + merger trained alone on a synth-cot dataset's labels and AUs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

RECIPE = "recipes/tiny/warmup/synthfacs.yaml"
FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen2_5_omni")


@pytest.fixture(scope="module")
def warm_data(tmp_path_factory):
    """24 posed SynthFACS clips at 56 px through the CoT pipeline (a cot and an emotion row per clip) and the tiny
    models with a 28 px patch (one video token per two-frame clip)."""
    from emoreason.cot.pipeline import CoTConfig, CoTPipeline
    from emoreason.models import build_tiny_model
    from emoreason.models.tiny import TinySpec
    from emoreason.synth import SynthConfig, build_dataset

    root = tmp_path_factory.mktemp("warmup")
    build_dataset(SynthConfig(out=str(root / "synth"), clips=24, frames=4, size=56, difficulty="posed",
                              identities=8), workers=1, progress=False)
    hf = CoTPipeline(CoTConfig(dataset_root=str(root / "synth"), output_dir=str(root / "cot"),
                               tasks={"cot": 1.0, "emotion": 1.0}), progress=False).run() / "hf"
    models = {f: build_tiny_model(f, root / f, seed=0, spec=TinySpec(vision_patch=28)) for f in FAMILIES}
    return {"hf": hf, "models": models}


def _config(model, data, out, *overrides: str):
    from emoreason.config import load_config
    from emoreason.training.vision_warmup import VisionWarmupConfig

    return load_config(VisionWarmupConfig, RECIPE, [f"model_name_or_path={model}", f"dataset_name={data}",
                                                    f"output_dir={out}", "num_train_epochs=2", *overrides])


def _visual(name: str) -> bool:
    """A vision-path parameter (``model.visual.*``, the Omni thinker's too)."""
    return ".visual." in name


def _summary(out) -> dict:
    return json.loads((out / "warmup_summary.json").read_text())


def _edited(hf, out, edit):
    """A copy of the dataset with ``edit(row) -> dict`` applied to every row of every split."""
    import datasets

    data = datasets.load_from_disk(str(hf))
    data = datasets.DatasetDict({split: rows.map(edit) for split, rows in data.items()})
    data.save_to_disk(str(out))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_the_warmup_trains_the_vision_path_alone_and_saves_a_model_that_loads(tmp_path, warm_data, family):
    """Every language-model and lm_head tensor is saved as loaded; the tower trains (Qwen3-VL: its deepstack mergers
    too); one clip per media file although each clip has a cot and an emotion row; the build record travels."""
    import datasets

    from emoreason.models import load_model_and_processor
    from emoreason.training.vision_warmup import run_vision_warmup

    source = warm_data["models"][family]
    out = tmp_path / "warm"
    final = run_vision_warmup(_config(source, warm_data["hf"], out))
    assert final == out / "final" and (final / "emoreason_model.json").is_file()
    warm, _ = load_model_and_processor(final, device="cpu")
    untrained, _ = load_model_and_processor(source, device="cpu")
    before = dict(untrained.named_parameters())
    params = dict(warm.named_parameters())
    assert set(params) == set(before)  # the heads are dropped
    changed = {n for n, p in params.items() if not torch.equal(p, before[n])}
    assert changed and all(_visual(n) for n in changed), sorted(changed)[:5]
    assert any(not _visual(n) for n in params)  # the language model and lm_head (Omni: the audio tower): identical
    if family == "qwen3_vl":
        assert any("deepstack" in n for n in changed)
    if family == "qwen2_5_omni":  # saved in the released composite layout vLLM serves, as the source is
        from emoreason.models.omni import COMPOSITE_MODEL_TYPE

        assert json.loads((final / "config.json").read_text())["model_type"] == COMPOSITE_MODEL_TYPE
        assert any(".audio_tower." in n for n in params)

    summary = _summary(out)
    train = datasets.load_from_disk(str(warm_data["hf"]))["train"]
    videos = set(train["video"])
    assert len(train) == 2 * len(videos)  # two task rows per clip...
    assert summary["clips"]["train"] == len(videos) == len(summary["clips_used"]["train"])  # ...seen once
    assert summary["completed"] and summary["au_head_used"] and summary["au_vocabulary"]
    assert summary["classes"] == sorted(set(train["emotion"]))
    val = datasets.load_from_disk(str(warm_data["hf"]))["val"]
    label_of = dict(zip(val["video"], val["emotion"], strict=True))  # one label per clip: accuracy is over clips
    majority = max(list(label_of.values()).count(e) for e in set(label_of.values())) / len(label_of)
    assert summary["final"]["chance_bar"] == max(1 / len(summary["classes"]), majority)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert all(0 <= h["eval_accuracy"] <= 1 and len(h["eval_ci95"]) == 2 for h in summary["history"])
    assert summary["clips"]["eval"] > 0 and summary["skipped"] == summary["skipped_rows"] == [] and summary["seconds"] > 0


def test_sft_starts_from_the_warmed_up_model(tmp_path, warm_data):
    """SFT from ``final`` with the whole vision path frozen ends with the warm-up's visual weights, which differ from
    the untrained model's: SFT started from them (a load of the wrong checkpoint, or a re-initialised tower, fails)."""
    from emoreason.models import load_model_and_processor
    from emoreason.sft.train import run_sft
    from emoreason.training import load_recipe
    from emoreason.training.vision_warmup import run_vision_warmup

    source = warm_data["models"]["qwen2_5_vl"]
    final = run_vision_warmup(_config(source, warm_data["hf"], tmp_path / "warm", "num_train_epochs=1"))
    recipe = load_recipe("sft", "recipes/tiny/sft/synthfacs.yaml", [
        f"model_name_or_path={final}", f"dataset_name={warm_data['hf']}", f"output_dir={tmp_path / 'sft'}",
        "max_frames=2", "max_pixels=3136", "max_steps=1", "per_device_train_batch_size=2", "save_strategy=no",
        "freeze_vision=true", "freeze_projector=true"])
    sft_final = run_sft(recipe)
    assert json.loads((tmp_path / "sft" / "train_summary.json").read_text())["global_step"] == 1

    def visual(path):
        model, _ = load_model_and_processor(path, device="cpu")
        return {n: p.detach().clone() for n, p in model.named_parameters() if _visual(n)}

    warm, after_sft, untrained = visual(final), visual(sft_final), visual(source)
    assert warm and set(after_sft) == set(warm)
    assert all(torch.equal(after_sft[n], warm[n]) for n in warm), [n for n in warm
                                                                   if not torch.equal(after_sft[n], warm[n])][:5]
    assert any(not torch.equal(warm[n], untrained[n]) for n in warm)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_warmup_encodes_a_clip_as_the_sft_collator_does(warm_data, family):
    """The tower warms up on exactly what SFT feeds it: for the same rows and frame keys, the warm-up's
    pixel_values_videos / video_grid_thw equal the SFT collator's (the Omni model's with its audio, as SFT trains it
    by default)."""
    import datasets

    from emoreason.models import load_model_and_processor
    from emoreason.sft.collator import VideoSFTCollator
    from emoreason.training import load_recipe
    from emoreason.training.loading import frame_policy
    from emoreason.training.vision_warmup import _encode_all, clips_of

    source = warm_data["models"][family]
    frame_keys = ["fps=4.0", "max_frames=2", "min_pixels=3136", "max_pixels=3136"]
    warm_cfg = _config(source, warm_data["hf"], "unused", *frame_keys)
    sft = load_recipe("sft", "recipes/tiny/sft/synthfacs.yaml", [
        f"model_name_or_path={source}", f"dataset_name={warm_data['hf']}", "output_dir=unused", *frame_keys]).script
    _, processor = load_model_and_processor(source, device="cpu")
    rows = list(datasets.load_from_disk(str(warm_data["hf"]))["train"].select(range(4)))
    clips, skipped, skipped_rows = clips_of(rows, "train")
    store = _encode_all(processor, frame_policy(warm_cfg, processor), clips, skipped, "train")
    assert len(store) == len(clips) == 2 and skipped == skipped_rows == []
    collator = VideoSFTCollator(processor, frame_policy(sft, processor))
    for clip, warm in zip(clips, store, strict=True):
        batch = collator([clip.row])
        assert torch.equal(warm.pixels, batch["pixel_values_videos"]), clip.path
        assert torch.equal(warm.grid, batch["video_grid_thw"]), clip.path


def test_the_summary_chance_is_the_projects_bar_not_one_over_k():
    """An unbalanced eval split: always answering its most frequent class beats 1/K, so that is the bar the held-out
    accuracy must clear (as `emoreason.evaluation.significance.versus_chance` and bench/learning.py hold it)."""
    from emoreason.training.vision_warmup import chance_of

    assert chance_of(4, ["anger", "anger", "anger", "fear"]) == {"chance": 0.25, "majority_rate": 0.75,
                                                                 "chance_bar": 0.75}
    assert chance_of(4, ["anger", "fear", "joy", "sadness"])["chance_bar"] == 0.25


def test_a_bf16_checkpoint_trains_its_tower_in_float32_and_keeps_its_dtype(warm_data):
    """On CUDA a real checkpoint loads in bf16 (dtype auto): its tower takes float32 AdamW steps (pure-bf16 updates
    round away) and is bf16 again afterwards, beside a language model left as loaded."""
    import datasets

    from emoreason.models import load_model_and_processor
    from emoreason.training.loading import frame_policy
    from emoreason.training.vision_warmup import _encode_all, clips_of, train_tower, vision_owner

    source = warm_data["models"]["qwen2_5_vl"]
    model, processor = load_model_and_processor(source, device="cpu")
    model.to(torch.bfloat16)
    rows = list(datasets.load_from_disk(str(warm_data["hf"]))["train"].select(range(8)))
    clips, skipped, _ = clips_of(rows, "train")
    store = _encode_all(processor, frame_policy(_config(source, warm_data["hf"], "unused"), processor), clips,
                        skipped, "train")
    visual = vision_owner(model).visual
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    during = []
    labels = torch.tensor([i % 2 for i in range(len(store))])
    train_tower(model, store, labels, torch.zeros(len(store), 0), {}, epochs=2, lr=1e-2, batch_size=2, au_weight=0.0,
                seed=0, report=lambda line: during.append({p.dtype for p in visual.parameters()}))
    assert during == [{torch.float32}] * 2
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(_visual(n) for n in changed)


def test_clips_without_observed_aus_add_no_au_loss():
    """The AU loss averages over the clips whose AUs were observed: a label-only clip's targets and logits change
    nothing, and a batch of label-only clips adds 0 (and no gradient)."""
    from emoreason.training.vision_warmup import masked_au_loss

    logits = torch.randn(4, 5, requires_grad=True)
    targets = torch.randint(0, 2, (4, 5)).float()
    observed = torch.tensor([True, False, True, False])
    loss = masked_au_loss(logits, targets, observed)
    other = targets.clone()
    other[~observed] = 1 - other[~observed]
    assert torch.equal(loss, masked_au_loss(logits, other, observed))
    loss.backward()
    assert torch.all(logits.grad[~observed] == 0) and torch.any(logits.grad[observed] != 0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[observed], targets[observed])
    assert torch.allclose(loss, expected)
    none = masked_au_loss(logits, targets, torch.zeros(4, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_a_dataset_without_observed_aus_trains_the_emotion_head_alone(tmp_path, warm_data):
    from emoreason.training.vision_warmup import run_vision_warmup

    data = _edited(warm_data["hf"], tmp_path / "label_only", lambda row: {"au_observed": False})
    run_vision_warmup(_config(warm_data["models"]["qwen2_5_vl"], data, tmp_path / "warm", "num_train_epochs=1"))
    summary = _summary(tmp_path / "warm")
    assert summary["completed"] and not summary["au_head_used"] and summary["au_vocabulary"] == []
    assert summary["clips"]["train_au_observed"] == 0
    assert any("AU head unused" in note for note in summary["notes"])


def test_an_unreadable_clip_and_a_clip_with_two_labels_are_skipped_named_and_the_run_goes_on(tmp_path, warm_data,
                                                                                              caplog):
    import datasets

    from emoreason.training.vision_warmup import run_vision_warmup

    train = datasets.load_from_disk(str(warm_data["hf"]))["train"]
    victim, torn = train[0]["video"], train[2]["video"]
    unlabelled = next(r for r in train if r["video"] not in (victim, torn) and r["task"] == "emotion")
    assert victim != torn
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(Path(victim).read_bytes()[:200])  # a truncated mp4

    def edit(row):
        if row["video"] == victim:
            return {"video": str(broken)}
        if row["video"] == torn and row["task"] == "emotion":  # its cot row keeps the label
            return {"emotion": "neutral" if row["emotion"] != "neutral" else "anger"}
        if row["id"] == unlabelled["id"]:  # a row without a label: skipped as a row; its clip's cot row still counts
            return {"emotion": ""}
        return {}

    data = _edited(warm_data["hf"], tmp_path / "data", edit)
    with caplog.at_level("WARNING"):
        run_vision_warmup(_config(warm_data["models"]["qwen2_5_vl"], data, tmp_path / "warm", "num_train_epochs=1"))
    summary = _summary(tmp_path / "warm")
    assert summary["completed"] and summary["clips"]["skipped"] == 2
    assert summary["clips"]["train"] == len(set(train["video"])) - 2
    reasons = {s["clip"]: s for s in summary["skipped"]}
    assert set(reasons) == {str(broken), torn} and all(s["split"] == "train" for s in reasons.values())
    assert reasons[str(broken)]["reason"] and "disagree on its label" in reasons[torn]["reason"]
    assert str(broken) in caplog.text
    assert summary["rows"]["skipped"] == 1 and summary["skipped_rows"][0]["id"] == unlabelled["id"]
    assert "the row has no emotion" in summary["skipped_rows"][0]["reason"] and unlabelled["id"] in caplog.text


def test_a_rerun_with_the_same_config_returns_at_once_and_another_config_is_refused(tmp_path, warm_data, monkeypatch):
    """Reuse needs the same config (paths compared resolved), data files and source model; a finished run of another
    config is refused; a run that failed or was killed leaves nothing to refuse (another config may follow it)."""
    import os

    from emoreason.config import ConfigError
    from emoreason.training import vision_warmup
    from emoreason.training.vision_warmup import run_vision_warmup

    model = shutil.copytree(warm_data["models"]["qwen2_5_vl"], tmp_path / "model")
    data = shutil.copytree(warm_data["hf"], tmp_path / "hf")
    out = tmp_path / "warm"

    def out_of_memory(*args, **kwargs):  # the fault a 7B model at batch 32 produces on a GPU; not on demand here
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (batch 32)")

    with monkeypatch.context() as patch:
        patch.setattr(vision_warmup, "train_tower", out_of_memory)
        with pytest.raises(torch.cuda.OutOfMemoryError):
            run_vision_warmup(_config(model, data, out, "num_train_epochs=1"))
    assert (out / "warmup_config.json").is_file() and not (out / "final").exists()
    cfg = _config(model, data, out, "num_train_epochs=1", "per_device_train_batch_size=8")
    final = run_vision_warmup(cfg)  # a smaller batch after the failure: runs (it was refused as another config)
    assert _summary(out)["config"]["per_device_train_batch_size"] == 8
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in [out / "warmup_summary.json",
                                                                   *sorted(final.iterdir())]}
    started = time.perf_counter()
    relative = _config(f".{os.sep}{os.path.relpath(model)}", os.path.relpath(data), os.path.relpath(out),
                       "num_train_epochs=1", "per_device_train_batch_size=8")
    assert run_vision_warmup(relative).resolve() == final  # ./m and m (and absolute) name one model
    assert time.perf_counter() - started < 5.0  # no model load, no clip decoded (the stamps say it wrote nothing)
    assert stamps == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in stamps}
    with pytest.raises(ConfigError, match="different config"):
        run_vision_warmup(_config(model, data, out, "num_train_epochs=1", "learning_rate=5e-4"))
    moved = shutil.copytree(out, tmp_path / "moved")  # a finished run moved elsewhere: still this config's
    assert run_vision_warmup(_config(model, data, moved, "num_train_epochs=1", "per_device_train_batch_size=8")) == (
        moved / "final")

    # the same data rewritten in place (a resumed synth-cot run rewrites identical files): reused; other data in
    # place, or another source model: refused
    shard = next((data / "train").glob("data-*.arrow"))
    original = shard.read_bytes()
    shard.write_bytes(original)
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    assert run_vision_warmup(cfg) == final
    shard.write_bytes(original + b"\0")
    with pytest.raises(ConfigError, match="dataset changed since"):
        run_vision_warmup(cfg)
    shard.write_bytes(original)
    assert run_vision_warmup(cfg) == final
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "initializer_range": 0.5}))
    with pytest.raises(ConfigError, match="model_config_sha256 changed since"):
        run_vision_warmup(cfg)

    # a killed run (its final gone): any config trains again
    shutil.rmtree(final)
    run_vision_warmup(_config(model, data, out, "num_train_epochs=1", "learning_rate=5e-4"))
    assert _summary(out)["config"]["learning_rate"] == 5e-4


def test_an_eval_split_that_is_missing_or_the_training_split_is_refused_and_shared_clips_are_named(tmp_path,
                                                                                                   warm_data, caplog):
    """Only an empty dataset_eval_split means "no held-out figure": a typo is an error naming the splits there are
    (it used to train on silently without one); the training split as eval split is refused; eval clips that are
    also training clips are named in a warning and the summary's notes."""
    import datasets

    from emoreason.config import ConfigError
    from emoreason.training.vision_warmup import run_vision_warmup

    model = warm_data["models"]["qwen2_5_vl"]
    with pytest.raises(ConfigError, match=r"dataset_eval_split='vall'.*no split 'vall' \(has .*val"):
        run_vision_warmup(_config(model, warm_data["hf"], tmp_path / "typo", "dataset_eval_split=vall"))
    with pytest.raises(ConfigError, match="is the training split"):
        run_vision_warmup(_config(model, warm_data["hf"], tmp_path / "same", "dataset_eval_split=train"))

    train = datasets.load_from_disk(str(warm_data["hf"]))["train"]
    leaky = tmp_path / "leaky"
    datasets.DatasetDict({"train": train, "val": train.select(range(4))}).save_to_disk(str(leaky))
    with caplog.at_level("WARNING"):
        run_vision_warmup(_config(model, leaky, tmp_path / "warm", "num_train_epochs=1"))
    notes = [n for n in _summary(tmp_path / "warm")["notes"] if "also training clips" in n]
    assert len(notes) == 1 and notes[0].startswith("2 eval clip(s)") and train[0]["video"] in notes[0]
    assert "also training clips" in caplog.text


def test_a_dataset_without_labels_or_with_one_class_is_a_clear_error(tmp_path, warm_data):
    from emoreason.training.vision_warmup import run_vision_warmup

    rows = [{"id": f"r{i}", "split": "train", "video": "clip.mp4", "media_type": "video", "emotion": "happiness"}
            for i in range(3)]
    one_class = tmp_path / "one.jsonl"
    one_class.write_text("".join(json.dumps(r) + "\n" for r in rows))
    no_label = tmp_path / "none.jsonl"
    no_label.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "emotion"}) + "\n" for r in rows))
    model = warm_data["models"]["qwen2_5_vl"]
    with pytest.raises(ValueError, match="no 'emotion' column"):
        run_vision_warmup(_config(model, no_label, tmp_path / "a", "dataset_eval_split="))
    with pytest.raises(ValueError, match="at least 2"):
        run_vision_warmup(_config(model, one_class, tmp_path / "b", "dataset_eval_split="))


def test_the_cli_reads_the_recipe_and_key_value_overrides(tmp_path):
    from emoreason.cli import build_parser, main
    from emoreason.commands.vision_warmup import parse_config
    from emoreason.config import ConfigError

    args = build_parser().parse_args(["vision-warmup", "--config", RECIPE, "num_train_epochs=3",
                                      "au_loss_weight=0", f"output_dir={tmp_path}", "dataset_eval_split="])
    cfg = parse_config(args)
    assert (cfg.num_train_epochs, cfg.au_loss_weight, cfg.output_dir) == (3, 0.0, str(tmp_path))
    assert cfg.dataset_eval_split is None
    assert (cfg.fps, cfg.max_frames, cfg.min_pixels, cfg.max_pixels) == (4.0, 2, 3136, 3136)  # the recipe's
    assert (cfg.learning_rate, cfg.per_device_train_batch_size, cfg.seed) == (1e-3, 32, 0)
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        parse_config(build_parser().parse_args(["vision-warmup", "--config", RECIPE, "lerning_rate=1"]))
    assert main(["vision-warmup", "--config", RECIPE, f"output_dir={tmp_path}",
                 f"model_name_or_path={tmp_path / 'missing'}"]) == 1  # a clear error, not a traceback
