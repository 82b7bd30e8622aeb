"""Test a checkpoint: `python scripts/eval.py ckpt_path=<checkpoint>` (seqmodels/conf/eval.yaml)."""

from seqmodels.evaluate import main

if __name__ == "__main__":
    main()
