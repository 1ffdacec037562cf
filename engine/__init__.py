"""Everything that is not UI: catalog, hardware, loading, generation, tokenizers, quantization, diffusion."""
