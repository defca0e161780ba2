"""``surgsam bench``: our engine against Meta's and transformers' SAM 2 video predictors, frame
by frame in one process (:mod:`.paired`)."""
