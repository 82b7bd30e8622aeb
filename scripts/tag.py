"""Slots and intent of sentences: `python scripts/tag.py ckpt_path=<ckpt> text="..."` (or stdin)."""

from seqmodels.tag import main

if __name__ == "__main__":
    main()
