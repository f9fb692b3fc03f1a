"""emoreason serve: serve a model with vLLM's OpenAI-compatible server, set up like training and evaluation."""

from __future__ import annotations

import argparse
import os

SERVE_EPILOG = """\
The served model samples and resizes videos and frame folders by the model's saved frame policy
(emoreason_frames.json, written by training), like `emoreason eval/predict --model`; --frames overrides it
(e.g. --frames fps=2 max_frames=16 to match a benchmark file's frames).

Security: vLLM's --weight-sync endpoints bind to loopback only unless --allow-remote-weight-sync and an API key
are given. With --api-key (or VLLM_API_KEY), every route except /health needs it; clients send it as a bearer
token (`emoreason predict --api-key`, or OPENAI_API_KEY).

Lifecycle: SIGTERM / SIGINT / SIGHUP at any time stop vLLM's whole process group (SIGTERM, then SIGKILL after
--stop-grace seconds; a second signal kills at once). If this process is killed outright, vLLM stops itself
within the grace period. vLLM's output goes to --log-file (echoed here).

exit codes: 128 + signal after a stop signal (143 for SIGTERM, 130 for Ctrl-C); 1 when vLLM could not start,
exited on its own (its last log lines are printed) or the settings were refused (port in use, bad values)."""


def register(subparsers) -> None:
    s = subparsers.add_parser("serve", help="serve a model with vLLM's OpenAI-compatible server",
                              description="Start vLLM with the chat template, frame policy, media limits, "
                                          "local-media restriction and safety defaults a video emotion model "
                                          "needs; Ctrl-C stops it.",
                              epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", required=True)
    s.add_argument("--media-dir", required=True, help="only files under this directory are readable by path")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--served-model-name")
    s.add_argument("--frames", nargs="+", metavar="KEY=VALUE", default=[],
                   help="frame policy overrides (fps, nframes, min_frames, max_frames, min_pixels, max_pixels, "
                        "total_pixels) on top of the model's saved policy")
    s.add_argument("--num-frames", type=int, help="a fixed frame count per video (same as --frames nframes=N)")
    s.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"),
                   help="require this bearer token on every route but /health (default: $VLLM_API_KEY); "
                        "prefer the environment variable: a command line is visible to other local users")
    s.add_argument("--weight-sync", action="store_true",
                   help="GRPO rollout server: let a trainer reload weights in place (vLLM dev endpoints; "
                        "loopback only unless --allow-remote-weight-sync)")
    s.add_argument("--allow-remote-weight-sync", action="store_true",
                   help="allow --weight-sync on a non-loopback --host (requires --api-key)")
    production = s.add_argument_group("engine settings (passed to vLLM, checked before anything loads)")
    production.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs to shard the model over")
    production.add_argument("--max-num-seqs", type=int, help="sequences batched at once (vLLM's default if unset)")
    production.add_argument("--max-model-len", type=int, default=4096, help="context length (prompt + reply)")
    production.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 (half), float32 (float)")
    production.add_argument("--quantization", help="a vLLM quantization method (awq, gptq, fp8, bitsandbytes, …)")
    production.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=None,
                            help="reuse the KV cache of shared prompt prefixes (vLLM's default if unset)")
    production.add_argument("--gpu-memory-utilization", type=float,
                            help="fraction of GPU memory for vLLM (default: vLLM's on a GPU, 0.3 on CPU)")
    production.add_argument("--max-media-mb", type=float, default=64.0,
                            help="largest video or packed frame folder the server decodes (MiB)")
    s.add_argument("--log-file", help="vLLM's log (default: a new file in the temp directory, named at start)")
    s.add_argument("--stop-grace", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL on stop")
    s.add_argument("--startup-timeout", type=float, default=600.0)
    s.add_argument("--python", help="interpreter with vLLM (default: this one, else .venv-vllm)")
    s.add_argument("vllm_args", nargs="*", help="extra arguments passed to vLLM after --")
    s.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from emoreason.config import parse_overrides
    from emoreason.serving.server import ServeConfig, serve_forever

    cfg = ServeConfig(model=args.model, media_dir=args.media_dir, port=args.port, host=args.host,
                      served_model_name=args.served_model_name, max_model_len=args.max_model_len,
                      frames=parse_overrides(args.frames), num_frames=args.num_frames,
                      python=args.python, gpu_memory_utilization=args.gpu_memory_utilization,
                      startup_timeout_s=args.startup_timeout, stop_grace_s=args.stop_grace,
                      weight_sync=args.weight_sync, allow_remote_weight_sync=args.allow_remote_weight_sync,
                      api_key=args.api_key or None, tensor_parallel_size=args.tensor_parallel_size,
                      max_num_seqs=args.max_num_seqs, dtype=args.dtype, quantization=args.quantization,
                      enable_prefix_caching=args.enable_prefix_caching, max_media_mb=args.max_media_mb,
                      extra_args=args.vllm_args)
    return serve_forever(cfg, log_path=args.log_file)
