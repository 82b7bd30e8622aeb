"""The tagger's word embedding, optionally initialised from pretrained vectors.

``model.word_vectors.path=<file>`` (GloVe, word2vec, fastText; see
:mod:`seqmodels.data.word_vectors`) fills the rows of the vocabulary's words that the file
has (``lowercase``: or their lower-cased form); the other rows (``<unk>``, words without a
vector) start random and always train. ``freeze=true`` keeps the file's rows fixed: no gradient
reaches them and the table gets no weight decay (:meth:`PretrainedEmbedding.no_weight_decay`),
so they stay the file's values bit for bit.
Vectors of another size than ``model.embedding_dim`` are refused, or with ``project=true``
go through a trained linear map to ``embedding_dim``.

The checkpoint holds the rows (they are the embedding's weights) and records the vectors'
``dim`` in ``model.word_vectors``: loading the tagger never reads the vectors file again.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from seqmodels.core.errors import ConfigError

log = logging.getLogger(__name__)

OPTIONS = {"path", "freeze", "lowercase", "project", "dim", "found"}


class PretrainedEmbedding(nn.Module):
    """An ``[V, dim]`` table (rows from a vectors file where ``from_file``), optionally frozen
    there, and a linear map to ``embedding_dim`` when the sizes differ."""

    def __init__(
        self, num_words: int, dim: int, embedding_dim: int, freeze: bool, project: bool
    ) -> None:
        super().__init__()
        self.table = nn.Embedding(num_words, dim, padding_idx=0)  # id 0 is <pad>
        self.register_buffer("from_file", torch.zeros(num_words, dtype=torch.bool))
        self.freeze = freeze
        self.project = nn.Linear(dim, embedding_dim) if project else None
        self.embedding_dim = embedding_dim if project else dim

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        vectors = self.table(words)
        if self.freeze:  # no gradient reaches the rows that came from the file
            vectors = torch.where(self.from_file[words].unsqueeze(-1), vectors.detach(), vectors)
        return self.project(vectors) if self.project is not None else vectors

    def no_weight_decay(self) -> list[nn.Parameter]:
        """Parameters the optimizer must not decay: a frozen table (its file rows get a zero
        gradient, but decoupled weight decay, AdamW's, would still shrink them every step)."""
        return [self.table.weight] if self.freeze else []


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigError(
            f"model.word_vectors has no option {', '.join(unknown)}; it takes path, freeze, "
            "lowercase and project"
        )


def build_embedding(
    model: dict[str, Any], num_embeddings: int, padding_idx: int | None
) -> nn.Embedding:
    """Token embeddings; ``padding_idx`` only where that id is padding (its row stays zero and
    never learns), ``None`` where every id is a real token (the char LM's id 0 is a character)."""
    dim = model.get("embedding_dim", 0)
    if dim < 1:
        raise ConfigError(f"model.embedding_dim must be >= 1, got {dim}")
    return nn.Embedding(num_embeddings, dim, padding_idx=padding_idx)


def build_word_embedding(model: dict[str, Any], vocabs: dict[str, list[str]]) -> nn.Module:
    """``nn.Embedding`` as before, or a :class:`PretrainedEmbedding` for ``model.word_vectors``.

    At training (no ``dim`` recorded yet) the file is read for the vocabulary's words and
    ``model["word_vectors"]`` gains ``dim`` and ``found``: these are the checkpoint's
    hyperparameters, so loading builds the same table without the file.
    """
    options = model.get("word_vectors") or {}
    words = list(vocabs["words"])
    if not options.get("path") and not options.get("dim"):
        return build_embedding(model, len(words), padding_idx=0)  # <pad>
    check_options(options)
    embedding_dim = model.get("embedding_dim", 0)
    found = None
    if not options.get("dim"):
        from seqmodels.data.word_vectors import vectors_for  # a file is read at training only

        # Every word but <pad> (row 0): the data module's read (its words and <unk>) covers it.
        lowercase = bool(options.get("lowercase", True))
        found = vectors_for(options["path"], words[1:], lowercase)
        options = {**options, "dim": found.dim}
    dim, project = int(options["dim"]), bool(options.get("project", False))
    if dim != embedding_dim and not project:
        raise ConfigError(
            f"model.word_vectors.path={options.get('path')} holds {dim}-d vectors but "
            f"model.embedding_dim={embedding_dim}: set model.embedding_dim={dim}, or "
            "model.word_vectors.project=true to learn a linear map to embedding_dim"
        )
    embedding = PretrainedEmbedding(
        len(words), dim, embedding_dim, bool(options.get("freeze", False)), dim != embedding_dim
    )
    if found is not None:
        lowercase = bool(options.get("lowercase", True))
        with torch.no_grad():
            for index, word in enumerate(words):
                vector = found.lookup(word, lowercase) if index else None  # not <pad>
                if vector is not None:
                    embedding.table.weight[index] = vector
                    embedding.from_file[index] = True
        count = int(embedding.from_file.sum())
        options["found"] = count
        log.info(
            "word vectors: %d of %d vocabulary words (%.1f%%) have a %d-d vector in %s%s",
            count,
            len(words),
            100.0 * count / max(len(words), 1),
            dim,
            options["path"],
            " (frozen)" if options.get("freeze") else "",
        )
    model["word_vectors"] = options  # what the checkpoint records
    return embedding
