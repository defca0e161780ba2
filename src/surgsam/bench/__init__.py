"""``surgsam bench``: our engine against Meta's and transformers' SAM 2 video predictors, frame
by frame in one process (:mod:`.paired`). Importing the package does not load torch."""

#: Our engine's memory policies (each also as ``<name>-fast``).
OURS = ("fifo", "efp", "dlm")
#: What ``surgsam bench`` runs unless told otherwise.
DEFAULT_VARIANTS = ("fifo", "fifo-fast", "efp", "efp-fast", "dlm", "dlm-fast", "meta", "hf")
