# SASRec with the original paper's initialisation details (validation grid on the GPU host's CPU
# cores; paper protocol, seeds 42/123/2023). Ran with a temporary switch in sasrec.py, not kept
# (no variant beat the default on validation): "scale" multiplied item embeddings by sqrt(d)
# before adding positions, "xavier" initialised every weight matrix with xavier_normal_.
# Results: benchmarks/results/explore7.jsonl (field "variant").
