"""pretrainlab: pre-train, evaluate, interpret and export language models on modest hardware."""
__version__ = "0.1.0"
