"""How far a run's scores can be trusted: reliability of the projective test and of its judge.

One module per job, pure functions of arrays except the stage:

- `gstudy`: variance components (random-effects ANOVA / EMS) of model x stem x config x sample,
  G and Phi, the D-study;
- `consistency`: Cronbach's alpha, McDonald's omega, split-half (Spearman-Brown), Kendall's W;
- `judge`: Krippendorff's alpha and QWK between judge passes, error on control completions;
- `assess`: the tables of one value system from its judgments; `verdict`: reliable / doubtful /
  unreliable per model x dimension;
- `stage`: `ReliabilityStage` (``reliability``), writing ``quality/*.parquet``.
"""
