"""Each task's network as a plain ``torch.nn.Module``: inference and export need no training stack.

``SlotTaggerNet``, ``CharLMNet`` and ``LongRangeNet`` hold the layers and the forward/decode
logic and are built from the plain hyperparameters a checkpoint stores. The LightningModules in
:mod:`seqmodels.tasks` subclass them (adding losses, metrics and optimizers), so a checkpoint's
weights load into either under the same names. :func:`load_net` reads one from a checkpoint
without importing Lightning, torchmetrics or Hydra. The parts only a network needs (the
tagger's inputs and decoders, char-LM features, the text sampler) live here too. May import
core, data and layers.
"""

from seqmodels.nets.char_lm import CharLMNet
from seqmodels.nets.loading import NETS, load_net
from seqmodels.nets.long_range import LongRangeNet
from seqmodels.nets.slot_tagger import SlotTaggerNet

__all__ = ["NETS", "CharLMNet", "LongRangeNet", "SlotTaggerNet", "load_net"]
