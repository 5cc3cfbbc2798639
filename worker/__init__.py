"""mecodes worker: RQ jobs that do the slow git work (run as `python -m worker`)."""
