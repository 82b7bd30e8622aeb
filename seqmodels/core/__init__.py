"""What every other package may import: the errors users see in one line
(:mod:`.errors`), reading a checkpoint as plain values (:mod:`.checkpoints`) and the
process-group helpers (:mod:`.distributed`). Imports nothing from seqmodels.
"""
