"""What is measured: the metric catalogue and the segmentation and classification metrics that fill it."""
