"""The hand-written LSTM: a drop-in for ``nn.LSTM`` / ``nn.LSTMCell`` you can read top to bottom.

``module`` (the ``nn.LSTM`` interface) and ``cell`` call ``function`` (the CPU recurrence with
its hand-derived backward), which steps aside for ``reference`` (the textbook step, and the
plain recompute transforms and compilers get) and hands CUDA tensors to ``cuda`` (fused
steps); ``steps`` and ``cpu_memory`` are what those share. Imports torch only.
"""

from seqmodels.layers.hand_lstm.cell import HandLSTMCell
from seqmodels.layers.hand_lstm.module import HandLSTM

__all__ = ["HandLSTM", "HandLSTMCell"]
