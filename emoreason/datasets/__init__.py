"""Benchmark adapters: each reads a dataset exactly as distributed into sample records.

``load_records(format, root, split=None, fold=None)`` is the one entry point; every problem met (missing
media, unknown label, malformed row, duplicate id) is recorded on the returned ``RecordSet.problems`` with the
file and line, and the rest of the dataset still loads.
"""

from emoreason.datasets.base import FORMATS, Problem, RecordSet, load_records
from emoreason.datasets.openface import OpenFaceTrack, read_openface_csv

__all__ = ["FORMATS", "OpenFaceTrack", "Problem", "RecordSet", "load_records", "read_openface_csv"]
