"""Prompts to a CLIP text encoder's ``input_ids`` without torch or transformers.

The exporter writes the pipeline's tokenizer as a ``tokenizer.json`` (Hugging Face's
``tokenizers`` format, which the torch-free ``tokenizers`` package reads) and checks that this
class gives exactly the ids transformers gives, for the class prompts and some free text.
Like the pipeline, every prompt is truncated to ``max_length`` tokens (start and end tokens
included) and padded with ``pad_id`` to that length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flare.runtime.core.generation_spec import TextSpec
from flare.runtime.foundation.errors import BundleError


class PromptTokenizer:
    """``tokenizer.json`` + the bundle's :class:`TextSpec`: prompts -> int64 ids (B, max_length)."""

    def __init__(self, path: Path, spec: TextSpec) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception type for a bad file
            raise BundleError(f"cannot read the tokenizer {path} ({exc}); re-export the bundle") from exc
        self.spec = spec
        self.tokenizer.enable_truncation(spec.max_length)
        self.tokenizer.enable_padding(length=spec.max_length, pad_id=spec.pad_id)

    def encode(self, prompts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(prompts))
        return np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(prompts), self.spec.max_length)
