"""Exit codes of the batch commands (``predict``, ``eval``, ``synth-cot``): a script can tell a clean run from
one where some or all items failed, without reading the per-item output."""

from __future__ import annotations

OK = 0  # every item succeeded
ERROR = 1  # nothing ran: bad configuration, missing model or data, an unexpected error
USAGE = 2  # bad command line (argparse)
ALL_FAILED = 3  # every item failed
SOME_FAILED = 4  # some items failed, the others succeeded

EPILOG = """exit codes:
  0  every item succeeded
  1  error before any item ran (configuration, missing model or data)
  2  bad command line
  3  every item failed
  4  some items failed (each failure is in the per-item output)"""


def batch_exit_code(total: int, failed: int) -> int:
    """OK, SOME_FAILED or ALL_FAILED for ``failed`` of ``total`` items (no items at all is an ERROR)."""
    if total <= 0:
        return ERROR
    if failed <= 0:
        return OK
    return ALL_FAILED if failed >= total else SOME_FAILED
