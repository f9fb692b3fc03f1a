"""Subcommands of the ``emoreason`` CLI (thin: argument parsing, then a call into the library)."""
