"""fairseq-hydra-train, as torchrun starts it, plus one thing for the test: every rank writes its
initial and final model parameters to $XATTN_DUMP_DIR/rank<R>.pt, so the test can compare the ranks.

fairseq saves checkpoints on rank 0 only, which cannot show that the ranks agree; keeping a reference
to the trainer (test instrumentation, not part of the plugin) lets each rank dump its own copy.
"""
import os
import sys

import torch
import fairseq.trainer
from fairseq_cli import hydra_train

_trainers = []
_init = fairseq.trainer.Trainer.__init__


def _remember(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self._xattn_initial = _parameters(self)
    _trainers.append(self)


def _parameters(trainer):
    return {k: v.detach().cpu().clone() for k, v in trainer.get_model().named_parameters()}


fairseq.trainer.Trainer.__init__ = _remember

if __name__ == "__main__":
    sys.argv[0] = "fairseq-hydra-train"
    hydra_train.cli_main()
    rank = int(os.environ["RANK"])
    (trainer,) = _trainers
    torch.save({"params": _parameters(trainer), "initial": trainer._xattn_initial,
                "num_updates": trainer.get_num_updates(),
                "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1},
               os.path.join(os.environ["XATTN_DUMP_DIR"], f"rank{rank}.pt"))
