"""``flare distill``: a small classifier trained on a teacher's soft labels and the hard labels.

The defaults of ``--temperature`` and ``--alpha`` live here, where the command (which must
load without torch) and the loss both read them: Hinton's soft temperature and an even share.
"""

TEMPERATURE = 4.0
ALPHA = 0.5
