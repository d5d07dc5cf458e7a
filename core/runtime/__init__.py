"""Running studies: storage, the job queue and budget, workers, background tasks."""
