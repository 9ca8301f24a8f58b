"""Hinton et al.'s knowledge-distillation loss, and the objective ``flare train``'s loop calls.

For student logits ``s``, teacher logits ``t``, hard label ``y``, temperature ``T`` and weight
``alpha``, averaged over the batch::

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

``T^2`` keeps the soft term's gradients at the scale of the hard term's as ``T`` grows (the
soft gradients shrink as 1/T^2), so ``alpha`` means the same share at any temperature. The
cross-entropy uses the student's plain logits (temperature 1), as the student is used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from flare.training.classifiers.train import Loss, Objective


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float,
                      alpha: float) -> torch.Tensor:
    """The batch mean of the loss above; ``student`` and ``teacher`` are (N, C) logits."""
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student, targets)


def soft_label_objective(logits_of: dict[str, np.ndarray], temperature: float, alpha: float) -> Objective:
    """The objective for :func:`flare.training.classifiers.train.train`: the rows' teacher logits
    laid out once in the training rows' order, then looked up by each batch's row indices."""
    def make(rows: list[dict[str, str]]) -> Loss:
        table = torch.from_numpy(np.stack([logits_of[r["path"]] for r in rows]).astype(np.float32))

        def loss(student: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return distillation_loss(student, table[index].to(student.device), targets, temperature, alpha)
        return loss
    return make
