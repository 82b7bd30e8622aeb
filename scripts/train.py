"""Train a model: `python scripts/train.py model=bilstm` (see seqmodels/conf/train.yaml)."""

from seqmodels.train import main

if __name__ == "__main__":
    main()
