"""Training: the resumable loop, run folders and job reporting."""
