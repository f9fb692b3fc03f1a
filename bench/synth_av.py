"""SynthFACS-AV: generation throughput with the voice beside video-only SynthFACS (same clips, same run), and the
prosody Praat measures on the written clips per emotion beside what the voice profiles asked for.

    python bench/synth_av.py [--clips 48] [--frames 16] [--size 224]

Throughput: render + voice synthesis + H.264/AAC encode + the speaker's neutral reference, one core, clips/s.
Prosody: each clip's AAC track is decoded (``emoreason.audio.read_audio``) and measured
(``emoreason.audio.prosody``); effects are relative to the same speaker's neutral voice (the manifest's
``voice.reference``), averaged per emotion, next to the target (the manifest's ``voice`` targets and the profile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from emoreason.audio import read_audio
from emoreason.audio.prosody import measure_prosody
from emoreason.synth import SynthConfig, build_dataset
from emoreason.synth.voice import VOCAL_PROFILES


def _throughput(tmp: Path, clips: int, frames: int, size: int, audio: bool) -> float:
    cfg = SynthConfig(out=str(tmp / ("av" if audio else "video")), clips=clips, frames=frames, size=size,
                      difficulty="easy", audio=audio)
    start = time.perf_counter()
    build_dataset(cfg, workers=1, progress=False)
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        video_only = _throughput(root, args.clips, args.frames, args.size, audio=False)
        with_voice = _throughput(root, args.clips, args.frames, args.size, audio=True)
        rows: dict[str, list[dict]] = defaultdict(list)
        start = time.perf_counter()
        for line in (root / "av" / "manifest.jsonl").read_text().splitlines():
            record = json.loads(line)
            audio = read_audio(root / "av" / record["media"]["path"])
            m = measure_prosody(audio.waveform, audio.sample_rate)
            voice, ref = record["voice"], record["voice"]["reference"]
            rows[record["emotion"]].append({
                "f0": m.f0_mean_hz / ref["f0_mean_hz"], "f0_target": voice["f0_mean_hz"] / ref["f0_mean_hz"],
                "f0_err": abs(m.f0_mean_hz - voice["f0_mean_hz"]) / voice["f0_mean_hz"],
                "db": m.intensity_mean_db - ref["intensity_mean_db"], "db_target": voice["level_db_re_neutral"],
                "rate": m.rate_syl_per_s / ref["rate_syl_per_s"], "slope": m.f0_slope_st_per_s,
                "range": m.f0_range_st, "range_target": voice["f0_range_st"], "jitter": m.jitter_local_pct,
                "jitter_target": voice["jitter_pct"]})
        measure_rate = args.clips / (time.perf_counter() - start)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"SynthFACS {args.frames}x{args.size}x{args.size}, easy, one core: video only {video_only:.2f} clips/s; "
          f"with voice (--audio) {with_voice:.2f} clips/s ({with_voice / video_only:.0%}); "
          f"decode + Praat prosody {measure_rate:.2f} clips/s")
    print("\n| emotion | n | F0 / neutral (target) | F0 error vs target | level dB vs neutral (target) | "
          "rate / neutral (profile) | F0 slope st/s | F0 range st (target) | jitter % (target) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for emotion in sorted(rows):
        r = rows[emotion]
        mean = {key: float(np.mean([x[key] for x in r])) for key in r[0]}.__getitem__
        profile = VOCAL_PROFILES[emotion]
        print(f"| {emotion} | {len(r)} | {mean('f0'):.2f} ({mean('f0_target'):.2f}) | {mean('f0_err'):.1%} | "
              f"{mean('db'):+.1f} ({mean('db_target'):+.1f}) | {mean('rate'):.2f} ({profile.rate_ratio:.2f} at full "
              f"strength) | {mean('slope'):+.2f} | {mean('range'):.1f} ({mean('range_target'):.1f}) | "
              f"{mean('jitter'):.2f} ({mean('jitter_target'):.2f}) |")


if __name__ == "__main__":
    main()
