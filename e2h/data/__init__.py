"""The data layer: problem records, step-labelled solutions, samples, the prompt format, and the sources
(synthetic benchmark, PRM800K, MetaMathQA). Plain Python: no torch, no Lightning."""
