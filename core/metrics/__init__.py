"""What is measured: the metric catalogue and the segmentation metrics that fill it."""
