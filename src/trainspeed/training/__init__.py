"""Training: the LightningModule and the Trainer that runs it."""
