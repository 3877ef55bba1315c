"""Generative value construction (paper section 3.2, Algorithm 1): answers -> value taxonomy."""
