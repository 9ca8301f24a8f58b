"""Super-resolution (FLARE stage 1's model): SwinIR, tiled inference, ``flare train-sr``."""
