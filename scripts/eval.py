"""Test a checkpoint: `python scripts/eval.py ckpt_path=<checkpoint>` (conf/eval.yaml)."""

from seqmodels.commands.evaluate import main

if __name__ == "__main__":
    main()
