"""What is trained: the architecture, loss and optimizer registries, model configs and bundles."""
