"""emoreason: video-LLMs that recognise facial emotion and explain it through facial Action Units."""

__version__ = "0.1.0"
