"""Speaker-embedding network (stages 8-9): ECAPA-TDNN, margin heads, mixup, data pipeline, training."""
