"""Serving with vLLM's OpenAI-compatible server (no home-made server): launch settings and lifecycle."""
