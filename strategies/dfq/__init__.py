"""Data-free quantization methods (GDFQ, IntraQ, each with and without RGAL's relation terms)."""
