"""Export a checkpoint for serving with torch alone: `python scripts/export.py ckpt_path=<ckpt>`."""

from seqmodels.commands.export import main

if __name__ == "__main__":
    main()
