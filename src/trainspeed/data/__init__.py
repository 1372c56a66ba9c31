"""Data: every data set becomes train/val/test tensors on the training device, batched by index."""

from trainspeed.data.datamodule import TensorDataModule, build_datamodule

__all__ = ["TensorDataModule", "build_datamodule"]
