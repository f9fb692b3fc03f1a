"""emoreason serve / predict: serve a model with vLLM's OpenAI-compatible server, and predict through it
(or locally with transformers)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    s = subparsers.add_parser("serve", help="serve a model with vLLM's OpenAI-compatible server",
                              description="Start vLLM with the chat template, media limits, frame sampling and "
                                          "local-media restriction a video emotion model needs; Ctrl-C stops it.")
    s.add_argument("--model", required=True)
    s.add_argument("--media-dir", required=True, help="only files under this directory are readable by path")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--served-model-name")
    s.add_argument("--max-model-len", type=int, default=4096)
    s.add_argument("--num-frames", type=int, help="frames vLLM samples per video (default: the model's training "
                                                  "policy, else 8)")
    s.add_argument("--python", help="interpreter with vLLM (default: this one, else .venv-vllm)")
    s.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    s.add_argument("--weight-sync", action="store_true",
                   help="GRPO rollout server: let a trainer reload weights in place (vLLM dev endpoints; bind to "
                        "trusted hosts only)")
    s.add_argument("vllm_args", nargs="*", help="extra arguments passed to vLLM after --")
    s.set_defaults(func=run_serve)

    p = subparsers.add_parser("predict", help="predict emotion + AUs for videos/images; prints JSON lines")
    p.add_argument("inputs", nargs="+", help="video/image paths or URLs")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    source.add_argument("--model", help="local model directory (transformers, no server)")
    p.add_argument("--served-model", help="model name on the endpoint (default: the first listed)")
    p.add_argument("--media-dir", help="the server's media dir: files under it go by path, others inline")
    p.add_argument("--image", action="store_true", help="inputs are images")
    p.add_argument("--labels", nargs="*", help="label set for the prompt (default: open vocabulary)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--max-tokens", type=int, default=512)
    p.set_defaults(func=run_predict)


def run_serve(args: argparse.Namespace) -> int:
    from emoreason.models import saved_frame_policy
    from emoreason.serving.server import ServeConfig, serve_forever

    num_frames = args.num_frames or saved_frame_policy(args.model).get("max_frames") or 8

    return serve_forever(ServeConfig(model=args.model, media_dir=args.media_dir, port=args.port, host=args.host,
                                     served_model_name=args.served_model_name, max_model_len=args.max_model_len,
                                     num_frames=num_frames, python=args.python,
                                     gpu_memory_utilization=args.gpu_memory_utilization, weight_sync=args.weight_sync,
                                     extra_args=args.vllm_args))


def run_predict(args: argparse.Namespace) -> int:
    kind = "image" if args.image else "video"
    if args.endpoint:
        from emoreason.client import EndpointConfig, predict_many

        config = EndpointConfig(base_url=args.endpoint, model=args.served_model, concurrency=args.concurrency,
                                timeout_s=args.timeout)
        results = [r.to_dict() for r in predict_many(config, args.inputs, kind, args.labels, "tags", args.media_dir,
                                                      args.max_tokens)]
    else:
        results = _predict_local(args, kind)
    for row in results:
        print(json.dumps(row, ensure_ascii=False))
    return 0 if all(r.get("error") is None for r in results) else 1


def _predict_local(args: argparse.Namespace, kind: str) -> list[dict]:
    """The same prompt, frame policy and parser as evaluation's local backend, one input at a time."""
    import time

    from emoreason.evaluation.backends import LocalBackend
    from emoreason.reasoning import parse_response
    from emoreason.records import SampleRecord

    backend = LocalBackend(args.model, {}, args.labels, "tags", batch_size=1, max_new_tokens=args.max_tokens)
    out = []
    for source in args.inputs:
        start = time.perf_counter()
        record = SampleRecord(id=str(source), dataset="predict", media={"type": kind, "path": str(source)})
        text, error = backend.predict([record])[0]
        parsed = parse_response(text or "")
        out.append({"source": source, "emotion": parsed.emotion, "aus": parsed.aus, "negated_aus": parsed.negated_aus,
                    "rationale": parsed.think, "format_ok": parsed.format_ok, "text": text,
                    "latency_s": time.perf_counter() - start, "error": error})
    print(f"predicted {len(out)} input(s) locally", file=sys.stderr)
    return out
