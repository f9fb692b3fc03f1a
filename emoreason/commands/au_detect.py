"""emoreason au-detect: per-frame facial Action Units from raw faces, offline (MediaPipe FaceMesh landmarks →
geometric AU estimator), written as OpenFace-2.x-layout CSVs."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "au-detect", help="estimate per-frame AUs from videos, frame folders or images (OpenFace-layout CSVs)",
        description=__doc__ + " Each input gets OUT/<name>.csv (frame, face_id, timestamp, confidence, success, "
                              "AUxx_r, AUxx_c) and OUT/<name>.au.json (per-frame flags, settings); "
                              "OUT/summary.json lists every input's status. Resumable: re-run the same command. "
                              "Needs the [au] extra: pip install 'emoreason[au]'.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, frame folders, images, folders of those, or glob patterns (quote them)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--workers", type=int, help="parallel processes (default: min(4, cores))")
    p.add_argument("--mode", choices=["auto", "video", "image"], default="auto",
                   help="baseline: the clip's own neutral frames (video) or the population-neutral face (image); "
                        "auto = video when the clip has enough frames with a face")
    p.add_argument("--select", choices=["largest", "central"], default="largest",
                   help="which face to keep when there are several")
    p.add_argument("--max-faces", type=int,
                   help="faces to look for per frame before choosing (default: 4 for images, 1 for videos — "
                        "raise it for multi-person clips; more is slower on video)")
    p.add_argument("--hand-every", type=int, default=10,
                   help="check for a hand covering the face every N frames (0 = off)")
    p.add_argument("--baseline-percentile", type=float, default=10.0)
    p.add_argument("--max-baseline-shift", type=float, default=2.5,
                   help="FACS steps a clip's own neutral may sit from the population-neutral face on the lip "
                        "measures before it is pulled back (clips with no neutral frame; docs/au_estimator.md)")
    p.add_argument("--stride", type=int, default=1,
                   help="analyse every Nth frame (faster; rows keep the source frame numbers and timestamps)")
    p.add_argument("--no-refine", action="store_true",
                   help="FaceMesh without the attention (iris/lid/lip refinement) model: faster, coarser eyes/lips "
                        "(the calibration used refinement)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs that are already done")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from emoreason.au.analysis import AUConfig
    from emoreason.au.batch import default_workers, run_batch

    config = AUConfig(mode=args.mode, select=args.select, max_faces=args.max_faces, hand_every=args.hand_every,
                      baseline_percentile=args.baseline_percentile,
                      max_baseline_shift=args.max_baseline_shift, stride=args.stride,
                      refine=not args.no_refine)
    summary = run_batch(args.inputs, args.out, config, workers=args.workers or default_workers(),
                        progress=not args.no_progress, overwrite=args.overwrite)
    print(json.dumps({k: summary[k] for k in ("inputs", "by_status", "failed", "no_face")}, indent=2))
    print(f"CSVs and summary.json in {args.out}")
    return 1 if summary["inputs"] and summary["by_status"].get("failed", 0) == summary["inputs"] else 0
