"""Class-incremental baselines, one module each; importing the package registers them with the runner."""
# registration order = --list order
from baselines import finetune, lwf, lwf_mc, icarl, ewc, joint, ucir, eeil, lwm, muc  # noqa: F401,I001
