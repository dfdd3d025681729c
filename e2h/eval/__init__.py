"""Evaluation, on what the modules wrote: greedy accuracy by level, solution scores from step scores,
re-ranking against N, the sampled solutions' accuracy, and the report with its plots."""
