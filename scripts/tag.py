"""Intent and slots of typed sentences as JSON lines: `python scripts/tag.py ckpt_path=<ckpt>
text="..."` (or sentences on stdin, one per line)."""

from seqmodels.commands.tag import main

if __name__ == "__main__":
    main()
