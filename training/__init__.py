"""FLARE training: data, the two augmentation stages and classifier training (needs torch).

Modules that only touch files (``data``, ``synth``) import no torch, so ``flare data`` works
with the runtime install alone.
"""
