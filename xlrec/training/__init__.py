"""Training loop, batching, the full-softmax loss, full-ranking evaluation and the one inference
path (`Recommender`)."""
