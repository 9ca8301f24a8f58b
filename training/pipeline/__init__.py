"""The FLARE pipeline: stage 1, stage 2, the weighted merge, ``flare augment`` and the experiment."""
