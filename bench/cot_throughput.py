"""CoT synthesis throughput: records/s in template mode (target ≥ 1,000 per core) and in teacher mode.

Template mode runs the whole pipeline (load records, evidence, temporal analysis, composition, verification,
JSONL + HF dataset) on SynthFACS. Teacher mode sends every draft through the OpenAI client to a loopback
server that answers at once (``tests/openai_stub.py``), so it measures the pipeline's own overhead per request
(client, concurrency, verification) — a real teacher adds its generation time on top.

    python bench/cot_throughput.py [--clips 400]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.datasets import load_records
from emoreason.synth import SynthConfig, build_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from openai_stub import StubServer, echo_draft  # noqa: E402

TARGET_PER_CORE = 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        build_dataset(SynthConfig(out=str(root), clips=args.clips, frames=8, size=64), progress=False)
        start = time.perf_counter()
        pipeline = CoTPipeline(CoTConfig(dataset_root=str(root), output_dir=str(Path(tmp) / "t")), progress=False)
        pipeline.run()
        template = args.clips / (time.perf_counter() - start)
        records = list(load_records("synthfacs", root))
        start = time.perf_counter()
        pipeline.run_shard(records)  # the per-record work alone: evidence → compose → verify → row
        core = len(records) / (time.perf_counter() - start)
        with StubServer(echo_draft) as server:
            start = time.perf_counter()
            CoTPipeline(CoTConfig(dataset_root=str(root), output_dir=str(Path(tmp) / "teacher"),
                                  teacher={"base_url": server.base_url, "concurrency": 16}), progress=False).run()
            teacher = args.clips / (time.perf_counter() - start)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"template mode, per-record work (one core): {core:8.0f} records/s   (target ≥ {TARGET_PER_CORE:.0f})")
    print(f"template mode, whole run incl. loading and writing JSONL + HF dataset: {template:8.0f} records/s")
    print(f"teacher mode, instant loopback teacher, 16 concurrent: {teacher:8.0f} records/s")


if __name__ == "__main__":
    main()
