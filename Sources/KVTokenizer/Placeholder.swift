// Hugging Face tokenizer.json support (in progress)
