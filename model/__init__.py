"""berth model: the PyTorch side — task heads, data readers, training loop, metrics."""
