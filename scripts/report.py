"""Compare a sweep's jobs: `python scripts/report.py <multirun or runs folder>`."""

from seqmodels.commands.report import main

if __name__ == "__main__":
    main()
