"""Sample text from a char-LM checkpoint: `python scripts/generate.py ckpt_path=<ckpt>`."""

from seqmodels.commands.generate import main

if __name__ == "__main__":
    main()
