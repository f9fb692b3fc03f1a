"""Benchmarks as files (lm-evaluation-harness spirit): ``eval/benchmarks/<name>.yaml`` says which dataset
adapter and protocol (split, folds), which label set goes in the prompt, the frame policy, and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emoreason.config import load_config

BENCHMARK_DIR = Path(__file__).resolve().parents[2] / "eval" / "benchmarks"
METRIC_GROUPS = ("recognition", "au", "va", "rationale", "rouge")


@dataclass
class BenchmarkSpec:
    name: str
    dataset_format: str
    root: str = ""
    split: str | None = "test"
    folds: list[int] | None = None  # multi-fold protocol: evaluate each, report mean ± std
    label_set: str | None = None  # dataset key in emoreason.knowledge.DATASET_LABEL_MAPS
    prompt_labels: bool = True  # put the label set in the prompt (else open vocabulary)
    style: str = "tags"
    frames: dict = field(default_factory=lambda: {"fps": 2.0, "max_frames": 16})
    metrics: list[str] = field(default_factory=lambda: ["recognition", "rationale"])
    au_set: list[int] | None = None  # AUs scored by per-AU F1 (BP4D 12, DISFA 8, ABAW 12)
    dataset_options: dict = field(default_factory=dict)
    max_new_tokens: int = 512
    description: str = ""

    def validate(self) -> None:
        unknown = set(self.metrics) - set(METRIC_GROUPS)
        if unknown:
            raise ValueError(f"benchmark {self.name}: unknown metric groups {sorted(unknown)}")
        if "au" in self.metrics and not self.au_set:
            raise ValueError(f"benchmark {self.name}: the 'au' metrics need an au_set")


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
