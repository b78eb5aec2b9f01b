"""The training corpus the detectors are tuned and tested on (see record.py and evaluate.py)."""
