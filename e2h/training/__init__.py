"""How training runs under Lightning: callbacks (writers of samples and scores, Hugging Face export, metrics
files, throughput), strategies that know where a Hugging Face model's layers are, and learning-rate schedules."""
