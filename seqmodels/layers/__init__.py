"""Layers: encoders (torch.nn RNN wrappers, the hand-written LSTM, minGRU/minLSTM, the
Transformer), the CRF, embeddings and character features.

They know nothing of tasks, checkpoints or Lightning; they may import :mod:`seqmodels.core`
and :mod:`seqmodels.data` (word-vector files) only.
"""

from seqmodels.layers.encoders import CELLS, RNNEncoder

__all__ = ["CELLS", "HandLSTM", "HandLSTMCell", "RNNEncoder"]


def __getattr__(name: str):
    if name in ("HandLSTM", "HandLSTMCell"):
        from seqmodels.layers import hand_lstm

        return getattr(hand_lstm, name)
    raise AttributeError(name)
