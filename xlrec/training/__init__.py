"""Training loop, batching, the full-softmax loss and full-ranking evaluation."""
