"""Train a model: `python scripts/train.py model=bilstm` (see conf/train.yaml)."""

from seqmodels.commands.train import main

if __name__ == "__main__":
    main()
