"""Training and search jobs: separate processes that write into a run folder.

The app never trains in its own process. It starts ``python -m workbench train|search ...``
detached (so a job survives the window closing), and follows it by reading the files the job
writes into its run folder (see :mod:`workbench.jobs.runs`).
"""
