"""Lightning callbacks: the training clock, time-to-target and untimed checkpointing."""
