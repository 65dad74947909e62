"""Training: dataset folders, the motion tokenizer and the motion-token generator."""
