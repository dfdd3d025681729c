"""Sampling from causal LMs: the two backends (`model.generate`, and a static-KV-cache loop compiled with
CUDA graphs on a GPU) behind one call, and the stable seeds sampling is drawn with."""
