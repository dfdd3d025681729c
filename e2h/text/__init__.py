"""Text as tokens: the tokenizer, encoding examples with their labels, step-to-token alignment, packing and
collation. Framework-free below the DataModules: tokenizers in, Python lists or tensors out."""
