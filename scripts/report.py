"""Compare a sweep's jobs: `python scripts/report.py <multirun or runs folder>`."""

from seqmodels.report import main

if __name__ == "__main__":
    main()
