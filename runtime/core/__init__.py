"""The torch-free inference core: artefacts and the bundle manifest, backends (runners),
preprocessing, tiling, samplers and the task registry's data (:mod:`flare.runtime.core.tasks`).

Uses :mod:`flare.runtime.foundation` only.
"""
