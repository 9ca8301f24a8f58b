"""Class-conditioned latent diffusion (FLARE stage 2's model) and ``flare train-diffusion``."""
