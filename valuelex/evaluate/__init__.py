"""Projective value evaluation (paper section 3.3, Algorithm 2): completions -> judged scores."""
