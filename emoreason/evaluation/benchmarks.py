"""Benchmarks as files (lm-evaluation-harness spirit): ``eval/benchmarks/<name>.yaml`` says which dataset
adapter and protocol (split, folds, frame-level AU windows), which label set goes in the prompt, the frame
policy, and the metrics.

A benchmark with ``folds`` is a cross-validation protocol (DFEW, MAFW: 5 folds; BP4D, DISFA: 3): fold k's
training set holds the other folds' test samples, so each fold is scored with the model trained on that fold,
and the figure reported is the mean ± std over folds (Jiang et al. 2020; Liu et al. 2022; Zhao et al. 2016).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from emoreason.config import load_config

BENCHMARK_DIR = Path(__file__).resolve().parents[2] / "eval" / "benchmarks"
METRIC_GROUPS = ("recognition", "au", "va", "rationale", "rouge")
# adapter options that say where the media is, not what is scored: left out of the protocol
MEDIA_LOCATION_OPTIONS = ("media_root", "layout", "audio_root")


class FoldProtocolError(ValueError):
    """A cross-validation benchmark asked to score one model on folds it was (or may have been) trained on."""


@dataclass
class BenchmarkSpec:
    name: str
    dataset_format: str
    root: str = ""
    split: str | None = "test"
    folds: list[int] | None = None  # cross-validation folds: one model per fold, mean ± std over folds
    label_set: str | None = None  # dataset key in emoreason.knowledge.DATASET_LABEL_MAPS
    prompt_labels: bool = True  # put the label set in the prompt (else open vocabulary)
    style: str = "tags"
    # the prompt's task (emoreason.reasoning.TASKS): "cot" (reasoning, then the answer) or "emotion" (the label
    # only, as a curriculum's short-answer rows ask): a model is scored on the question it was trained to answer
    task: str = "cot"
    frames: dict = field(default_factory=lambda: {"fps": 2.0, "max_frames": 16})
    metrics: list[str] = field(default_factory=lambda: ["recognition", "rationale"])
    au_set: list[int] | None = None  # AUs scored by per-AU F1 (BP4D 12, DISFA 8, ABAW 12)
    # frame-level AU protocol: a sample every `stride`-th annotated frame, a window of `frames` source frames
    # `step` apart centred on it (frames defaults to the frame policy's count: nframes, else max_frames)
    windows: dict | None = None
    dataset_options: dict = field(default_factory=dict)
    max_new_tokens: int = 512
    description: str = ""

    def validate(self) -> None:
        if self.task not in ("cot", "emotion"):
            raise ValueError(f"benchmark {self.name}: task must be 'cot' or 'emotion', got {self.task!r}")
        if self.task == "emotion":  # a label-only answer has no rationale, AUs or valence to score
            self.metrics = [m for m in self.metrics if m == "recognition"]
        unknown = set(self.metrics) - set(METRIC_GROUPS)
        if unknown:
            raise ValueError(f"benchmark {self.name}: unknown metric groups {sorted(unknown)}")
        if "au" in self.metrics and not self.au_set:
            raise ValueError(f"benchmark {self.name}: the 'au' metrics need an au_set")
        if self.windows is not None:
            from emoreason.datasets.adapters import Windows

            policy_frames = self.frames.get("nframes") or self.frames.get("max_frames")
            if self.windows.get("frames") is not None and policy_frames and \
                    int(self.windows["frames"]) != int(policy_frames):
                raise ValueError(f"benchmark {self.name}: windows.frames={self.windows['frames']} differs from the "
                                 f"frame policy's {policy_frames} frames; the window is what the model sees")
            Windows.parse(self.window_options())

    def window_options(self) -> dict | None:
        """The adapter's ``windows`` option: stride, step and the frame count (the frame policy's)."""
        if self.windows is None:
            return None
        frames = self.windows.get("frames") or self.frames.get("nframes") or self.frames.get("max_frames") or 16
        return {"stride": int(self.windows.get("stride", 1)), "step": int(self.windows.get("step", 1)),
                "frames": int(frames)}

    def adapter_options(self) -> dict:
        options = dict(self.dataset_options)
        if self.windows is not None:
            options["windows"] = self.window_options()
        return options

    def protocol(self) -> dict:
        """What defines the scores this benchmark produces (two runs agree on it or are not comparable)."""
        from emoreason.knowledge import dataset_label_set

        return {
            "benchmark": self.name, "dataset": self.dataset_format, "split": self.split, "folds": self.folds,
            "classes": list(dataset_label_set(self.label_set)) if self.label_set else None,
            "prompt_labels": self.prompt_labels, "style": self.style, "au_set": self.au_set,
            "windows": self.window_options(), "metrics": sorted(self.metrics), "max_new_tokens": self.max_new_tokens,
            **({"task": self.task} if self.task != "cot" else {}),  # absent for cot: earlier runs stay comparable
            "dataset_options": {k: v for k, v in sorted(self.dataset_options.items())
                                if k not in MEDIA_LOCATION_OPTIONS},
        }

    def protocol_hash(self) -> str:
        return short_hash(self.protocol())

    def to_dict(self) -> dict:
        return asdict(self)


def short_hash(value: object, n: int = 12) -> str:
    """First ``n`` hex digits of the SHA-256 of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


def available_benchmarks() -> list[str]:
    return sorted(p.stem for p in BENCHMARK_DIR.glob("*.yaml"))


def load_benchmark(name_or_file: str, overrides: list[str] | None = None) -> BenchmarkSpec:
    """A benchmark by name (``eval/benchmarks/<name>.yaml``) or by path to a YAML file."""
    path = Path(name_or_file)
    if not path.is_file():
        path = BENCHMARK_DIR / f"{name_or_file}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark {name_or_file!r}; known: {', '.join(available_benchmarks())}")
    spec = load_config(BenchmarkSpec, path, overrides)
    spec.validate()
    return spec
