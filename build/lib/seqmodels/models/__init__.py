"""Encoders: torch.nn RNN wrappers and the hand-written LSTM."""

from seqmodels.models.encoders import CELLS, RNNEncoder

__all__ = ["CELLS", "HandLSTM", "HandLSTMCell", "RNNEncoder"]


def __getattr__(name: str):
    if name in ("HandLSTM", "HandLSTMCell"):
        from seqmodels.models import hand_lstm

        return getattr(hand_lstm, name)
    raise AttributeError(name)
