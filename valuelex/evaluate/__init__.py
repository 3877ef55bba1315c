"""Projective value evaluation (paper section 3.3, Algorithm 2): completions -> judged scores.

One module per step:

- `systems`: value systems to score (packaged ValueLex, Schwartz, MFT; or a constructed taxonomy.json);
- `embedding`: the fast offline judge φ (sentence-embedding similarity, calibrated to 0..6);
- `calibration`: the embedding judge's optional per-dimension monotone calibration; `refit` fits it;
- `llm_judge`: the LLM judge φ, one constrained JSON request per completion for every dimension;
- `position`: the LLM judge's few-shot order (rotated per completion) and the position-bias check;
- `judgments`: the per-completion judgments table beside the completion text;
- `scores`: Eq. 4 on normalised scores, with two-level bootstrap confidence intervals;
- `adaptive`: adaptive M, the stopping rule and its driver loop;
- `agreement`: judge check (QWK, exact / ±1 agreement, confusion) against humans or another judge;
- `devset`: the packaged labelled development set and a judge's QWK, alpha, AUC, balanced accuracy on it;
- `stage`: `EvaluationStage`, the whole stage over a run's store;
- `config`: `EvaluationSpec`, the study file's `evaluation:` section.

Nothing heavy is imported here: `valuelex.spec` imports `config` at load time.
"""
