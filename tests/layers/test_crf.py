"""The CRF against brute-force enumeration of every tag sequence, and BIO-valid decoding."""

from __future__ import annotations

import itertools

import pytest
import torch
from seqeval.metrics.sequence_labeling import get_entities

from seqmodels.layers.crf import CRF, allowed_transitions

BIO_TAGS = ["<pad>", "<unk>", "O", "B-a", "I-a", "B-b", "I-b"]
IOBES_TAGS = ["O", "B-a", "I-a", "E-a", "S-a", "B-b", "E-b", "S-b"]


def random_crf(k: int, seed: int, allowed=None) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(k, allowed)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    """The textbook sum: start + emissions + transitions + end, one step at a time."""
    score = crf.start[path[0]] + crf.end[path[-1]]
    for t, tag in enumerate(path):
        score = score + emissions[t, tag]
        if t:
            score = score + crf.transitions[path[t - 1], tag]
    return score


def batch(lengths: list[int], k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed + 100)
    emissions = torch.randn(len(lengths), max(lengths), k, dtype=torch.float64)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return emissions, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partition_and_likelihood_match_brute_force(seed: int) -> None:
    k, lengths = 3, [4, 1, 3, 2]
    crf = random_crf(k, seed).double()
    emissions, mask = batch(lengths, k, seed)
    log_z = crf.log_partition(emissions, mask)
    for b, n in enumerate(lengths):
        scores = torch.stack(
            [path_score(crf, emissions[b], p) for p in itertools.product(range(k), repeat=n)]
        )
        torch.testing.assert_close(log_z[b], torch.logsumexp(scores, 0))
    # Likelihoods of all paths of one sequence sum to one; padding tags do not matter.
    n = lengths[0]
    paths = torch.tensor(list(itertools.product(range(k), repeat=n)))
    many = emissions[:1].expand(len(paths), -1, -1)
    ll = crf.log_likelihood(many, paths, mask[:1].expand(len(paths), -1))
    torch.testing.assert_close(ll.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    padded = torch.cat([paths[:, :2], torch.full((len(paths), 2), 2)], 1)
    short = mask[3:4].expand(len(paths), -1)
    assert torch.allclose(
        crf.log_likelihood(many, padded, short),
        crf.log_likelihood(many, torch.cat([paths[:, :2], paths[:, :2]], 1), short),
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_viterbi_matches_brute_force_with_and_without_constraints(seed: int) -> None:
    tags = BIO_TAGS
    k, lengths = len(tags), [4, 1, 3]
    start, trans, end = allowed_transitions(tags, "BIO")
    for allowed in (None, (start, trans, end)):
        crf = random_crf(k, seed, allowed).double()
        emissions, mask = batch(lengths, k, seed)
        decoded = crf.decode(emissions, mask)
        for b, n in enumerate(lengths):
            best, best_path = None, None
            for p in itertools.product(range(k), repeat=n):
                if allowed is not None and not (
                    start[p[0]] and end[p[-1]] and all(trans[i, j] for i, j in zip(p, p[1:]))
                ):
                    continue
                s = float(path_score(crf, emissions[b], p).detach())
                if best is None or s > best:
                    best, best_path = s, p
            assert tuple(decoded[b, :n].tolist()) == best_path


def is_valid_bio(seq: list[str]) -> bool:
    prev = "O"
    for tag in seq:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        if tag in ("<pad>", "<unk>"):
            return False
        prev = tag
    return True


def test_decoding_never_emits_invalid_bio() -> None:
    """Emissions that favour I- after O (and at the start) still decode to valid BIO."""
    tags = BIO_TAGS
    crf = random_crf(len(tags), 0, allowed_transitions(tags, "BIO"))
    torch.manual_seed(5)
    emissions = torch.randn(64, 9, len(tags)) * 3
    emissions[:, :, tags.index("I-a")] += 4  # argmax alone would start with I-a
    emissions[:, :, tags.index("<pad>")] += 10  # blocked tags stay blocked
    lengths = torch.randint(1, 10, (64,))
    mask = torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)
    blocked = torch.tensor([t in ("<pad>", "<unk>") for t in tags])
    decoded = crf.decode(emissions, mask, blocked)
    for row, n in zip(decoded.tolist(), lengths.tolist()):
        seq = [tags[i] for i in row[:n]]
        assert is_valid_bio(seq), seq
    # Unconstrained argmax would have produced invalid ones: the test can fail.
    greedy = emissions.masked_fill(blocked, float("-inf")).argmax(-1)
    assert not all(
        is_valid_bio([tags[i] for i in row[:n]])
        for row, n in zip(greedy.tolist(), lengths.tolist())
    )


def test_iobes_decoding_gives_closed_chunks() -> None:
    tags = IOBES_TAGS
    crf = random_crf(len(tags), 1, allowed_transitions(tags, "IOBES"))
    torch.manual_seed(6)
    emissions = torch.randn(32, 6, len(tags)) * 3
    decoded = crf.decode(emissions, torch.ones(32, 6, dtype=torch.bool))
    for row in decoded.tolist():
        seq = [tags[i] for i in row]
        # A closed chunk structure: relabelled as BIO via seqeval's chunks, the chunks cover
        # every non-O tag, and every B/I is followed by I/E of its type.
        for a, b in zip(seq, seq[1:] + ["O"]):
            if a[0] in "BI":
                assert b[0] in "IE" and b[2:] == a[2:], seq
            if b[0] in "IE":
                assert a[0] in "BI" and a[2:] == b[2:], seq
        covered = sum(end - start + 1 for _, start, end in get_entities(seq))
        assert covered == sum(t != "O" for t in seq)


def test_allowed_transitions_bio() -> None:
    start, trans, end = allowed_transitions(BIO_TAGS, "BIO")
    ix = BIO_TAGS.index
    assert not start[ix("I-a")] and start[ix("B-a")] and start[ix("O")]
    assert not start[ix("<pad>")] and not trans[ix("O"), ix("<unk>")]
    assert not trans[ix("O"), ix("I-a")] and not trans[ix("B-b"), ix("I-a")]
    assert (
        trans[ix("B-a"), ix("I-a")] and trans[ix("I-a"), ix("I-a")] and trans[ix("I-a"), ix("B-b")]
    )
    with pytest.raises(ValueError, match="scheme"):
        allowed_transitions(BIO_TAGS, "IOB3")


def test_decode_empty_batch() -> None:
    crf = CRF(3)
    assert crf.decode(torch.zeros(0, 5, 3), torch.zeros(0, 5, dtype=torch.bool)).shape == (0, 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marginals_match_brute_force_over_the_sequences_decode_chooses_from(seed: int) -> None:
    """p(tag at t = k) summed over every sequence, with and without BIO constraints and a
    blocked tag; rows of a sentence sum to one, positions past its length are zero."""
    tags = BIO_TAGS
    k, lengths = len(tags), [4, 1, 3]
    start, trans, end = allowed_transitions(tags, "BIO")
    blocked = torch.tensor([t in ("<pad>", "<unk>") for t in tags])
    for allowed, block in ((None, None), ((start, trans, end), blocked)):
        crf = random_crf(k, seed, allowed).double()
        emissions, mask = batch(lengths, k, seed)
        with torch.no_grad():
            marginals = crf.marginals(emissions, mask, block)
        for b, n in enumerate(lengths):
            paths, scores = [], []
            for p in itertools.product(range(k), repeat=n):
                if block is not None and any(block[i] for i in p):
                    continue
                if allowed is not None and not (
                    start[p[0]] and end[p[-1]] and all(trans[i, j] for i, j in zip(p, p[1:]))
                ):
                    continue
                paths.append(p)
                scores.append(path_score(crf, emissions[b], p).detach())
            probs = torch.softmax(torch.stack(scores), 0)
            expected = torch.zeros(max(lengths), k, dtype=torch.float64)
            for p, prob in zip(paths, probs):
                expected[torch.arange(n), torch.tensor(p)] += prob
            torch.testing.assert_close(marginals[b], expected)
            torch.testing.assert_close(marginals[b, :n].sum(1), torch.ones(n, dtype=torch.float64))
    # The Viterbi path's tags are never given probability zero.
    decoded = crf.decode(emissions, mask, blocked)
    assert (marginals.gather(2, decoded.unsqueeze(2)).squeeze(2)[mask] > 0).all()
