"""FLARE training (needs torch): one sub-package per stage, each with the command it drives.

``data`` (image folders, leak-free splits, the synthetic sky; no torch, so ``flare data``
works with the runtime install alone), ``classifiers``, ``sr`` (FLARE stage 1's SwinIR),
``diffusion`` (stage 2's latent diffusion) and ``pipeline`` (the two stages, the merge and the
experiment). ``devices`` and ``checkpoints`` are the helpers they share.
"""
