"""Classifier backbones, their training loop, metrics and the ``flare train`` command."""
