"""Class-incremental baselines, one module each; importing the package registers them with the runner."""
from baselines import finetune, lwf, lwf_mc, icarl, ewc, joint, ucir, eeil, lwm, muc  # noqa: F401,I001  (registration order = --list order)
