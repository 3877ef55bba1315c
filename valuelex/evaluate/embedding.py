"""The embedding judge: a fast, offline φ from sentence embeddings (no LLM, no network).

For each scored (leaf) dimension two *poles* are embedded once per value system:

- the aligned pole: the normalised mean of the embeddings of ``"<definition> Valued: <anchors>."``
  and ``"I value <anchors>."``;
- the conflict pole: ``"I value <conflicts>."``, when the dimension lists conflict words.

A completion (the stem continued by the response) is embedded and compared by cosine similarity.

Calibration (fixed thresholds, piecewise linear, then rounded to an integer 0..6):

- with a conflict pole: ``d = cos(y, aligned) - cos(y, conflict)`` and
  ``score = round(3 + 3 * clip(d / SCALE, -1, 1))`` with ``SCALE = 0.2``: ``d <= -0.2`` scores 0
  (conflict), ``d = 0`` scores 3 (neutral: as close to both poles, typically because the completion
  is about something else), ``d >= 0.2`` scores 6 (aligned). Each score step is ``0.2 / 3 ≈ 0.067``
  of ``d``. On all-MiniLM-L6-v2 unrelated sentences give ``d ≈ -0.02 ± 0.07``, i.e. 3 ± 1.
- without conflict words (e.g. a constructed taxonomy): ``d = cos(y, aligned) - NEUTRAL_SIMILARITY``
  (0.10, about the similarity of unrelated sentences) and ``score = round(3 + 3 * clip(d / SCALE, 0, 1))``:
  such a dimension can only be scored neutral-to-aligned, never conflicting.

Calibrated rule (``calibration="packaged"``, `valuelex.evaluate.calibration`): the same ``d``
through a monotone step function fitted per dimension on the development set's calibration half,
for the packaged systems it was fitted on; other systems (a constructed taxonomy) keep the rule above.
The judge key names the calibration (its digest), so calibrated and uncalibrated judgments never mix.

Stance rule (``calibration="stance"``, `valuelex.evaluate.stance`): features that also read rejection
("I hate lying": similarity to endorse and reject prototypes of both poles, a rejection cue word)
through an ordinal logistic model fitted on the calibration half; packaged systems only, like above.

Sentence embeddings capture what a text is *about* far better than its polarity (negation is weak),
so this judge separates clear cases but is much cruder than an LLM judge. Its agreement with an LLM
judge or human labels is measured with `valuelex.evaluate.agreement`, never assumed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from valuelex.embeddings import default_model_path, sentence_model
from valuelex.evaluate import calibration as calib
from valuelex.evaluate import stance
from valuelex.evaluate.judgments import JudgeTask, completed_sentence, is_blank, judgment
from valuelex.evaluate.systems import ValueDimension, ValueSystem

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE = 0.2
NEUTRAL_SIMILARITY = 0.10
BATCH_ROWS = 256
ENCODE_ROWS = 2048  # completions encoded in one call: the encoder sorts by length inside a call (less padding)


def pole_texts(dim: ValueDimension) -> tuple[list[str], str | None]:
    """(aligned texts, conflict text or None) embedded for one dimension."""
    anchors = ", ".join(dim.anchors)
    aligned = [f"{dim.definition} Valued: {anchors}.", f"I value {anchors}."]
    conflict = f"I value {', '.join(dim.conflicts)}." if dim.conflicts else None
    return aligned, conflict


def calibrate(aligned_sim: np.ndarray, conflict_sim: np.ndarray | None) -> np.ndarray:
    """Integer scores 0..6 from cosine similarities (see the module docstring); NaN conflict = no pole."""
    aligned_sim = np.asarray(aligned_sim, dtype=float)
    if conflict_sim is None:
        conflict_sim = np.full_like(aligned_sim, np.nan)
    conflict_sim = np.asarray(conflict_sim, dtype=float)
    two_pole = ~np.isnan(conflict_sim)
    d_two = (aligned_sim - np.where(two_pole, conflict_sim, 0.0)) / SCALE
    d_one = (aligned_sim - NEUTRAL_SIMILARITY) / SCALE
    x = np.where(two_pole, np.clip(d_two, -1, 1), np.clip(d_one, 0, 1))
    return np.rint(3 + 3 * x).astype(int)


def differences(aligned_sim: np.ndarray, conflict_sim: np.ndarray) -> np.ndarray:
    """``d`` of the module docstring: aligned minus conflict similarity, or minus NEUTRAL_SIMILARITY without a pole."""
    aligned_sim, conflict_sim = np.asarray(aligned_sim, dtype=float), np.asarray(conflict_sim, dtype=float)
    return np.where(np.isnan(conflict_sim), aligned_sim - NEUTRAL_SIMILARITY, aligned_sim - conflict_sim)


def calibrated(d: np.ndarray, part: dict[str, Any], keys: tuple[str, ...]) -> np.ndarray:
    """Integer scores (n, L) of differences `d` (n, L) under a system's fitted calibration."""
    d = np.asarray(d, dtype=float)
    return np.stack([calib.apply_dimension(part["dimensions"][k], d[:, i]) for i, k in enumerate(keys)], axis=1)


class EmbeddingJudge:
    """Scores every leaf dimension of a value system by embedding similarity."""

    kind = "embedding"

    def __init__(self, model_path: str | None = None, *, batch_size: int = 64,
                 calibration: str | dict[str, Any] | None = None):
        """`calibration`: None or "none" (the fixed rule), "packaged" (the model's packaged isotonic
        calibration, if it has one), "stance" (its packaged stance calibration), or a calibration dict
        (`valuelex.evaluate.calibration.fit`, or `valuelex.evaluate.refit.fit_stance`: ``kind: stance``)."""
        self.model_path = str(model_path or default_model_path())
        self.batch_size = batch_size
        self.name = f"embedding:{'all-MiniLM-L6-v2' if model_path is None else Path(model_path).name}"
        if calibration == "packaged":
            self.calibration = calib.packaged(self.name)
        elif calibration == "stance":
            self.calibration = stance.packaged(self.name)
        else:
            self.calibration = None if calibration in (None, "none") else calibration
        self._poles: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._prototypes: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}

    def calibration_for(self, system: ValueSystem) -> dict[str, Any] | None:
        """The calibration this judge applies to `system` (None: the fixed rule)."""
        if isinstance(self.calibration, dict) and self.calibration.get("kind") == "stance":
            return stance.for_system(self.calibration, system)
        return calib.for_system(self.calibration, system)

    def rule_for(self, system: ValueSystem) -> str:
        """How this judge scores `system`: "stance model", "isotonic calibration" or "fixed rule"."""
        part = self.calibration_for(system)
        return "fixed rule" if part is None else ("stance model" if "features" in part else "isotonic calibration")

    def key(self, system: ValueSystem) -> str:
        """Identifies judgments made with these settings on this version of the system.

        Uncalibrated keys are those of earlier versions (the settings hashed are unchanged); a
        calibrated key adds the digest of the system's calibration."""
        settings: dict[str, Any] = {"model": self.name, "scale": SCALE, "neutral": NEUTRAL_SIMILARITY}
        part = self.calibration_for(system)
        if part is not None:
            settings["calibration"] = stance.digest(part) if "features" in part else calib.digest(part)
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}#{digest}@{system.fingerprint()}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = sentence_model(self.model_path)
        return np.asarray(model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                       show_progress_bar=False), dtype=np.float32)

    def poles(self, system: ValueSystem) -> tuple[np.ndarray, np.ndarray]:
        """(aligned, conflict) unit vectors per leaf, shape (L, dim); conflict rows are NaN when absent."""
        cache_key = system.fingerprint()
        if cache_key not in self._poles:
            leaves = system.leaves()
            texts = [pole_texts(d) for d in leaves]
            aligned_raw = self._encode([t for pair in texts for t in pair[0]]).reshape(len(leaves), 2, -1).mean(axis=1)
            aligned = aligned_raw / np.linalg.norm(aligned_raw, axis=1, keepdims=True)
            conflict = np.full_like(aligned, np.nan)
            with_conflict = [i for i, (_, c) in enumerate(texts) if c]
            if with_conflict:
                conflict[with_conflict] = self._encode([texts[i][1] for i in with_conflict])
            self._poles[cache_key] = (aligned, conflict)
        return self._poles[cache_key]

    def prototypes(self, system: ValueSystem) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The stance prototypes: name -> unit vectors (L, dim) (NaN rows without conflict words), and the
        neutral prototype (dim,) (`valuelex.evaluate.stance`)."""
        cache_key = system.fingerprint()
        if cache_key not in self._prototypes:
            lex = stance.lexicon()
            neutral = self._mean_unit(list(lex.neutral_texts))
            per_leaf = [stance.prototype_texts(d, lex) for d in system.leaves()]
            protos = {name: np.stack([self._mean_unit(texts[name]) if texts[name] else np.full_like(neutral, np.nan)
                                      for texts in per_leaf]) for name in stance.PROTOTYPES}
            self._prototypes[cache_key] = (protos, neutral)
        return self._prototypes[cache_key]

    def _mean_unit(self, texts: list[str]) -> np.ndarray:
        mean = self._encode(texts).mean(axis=0)
        return mean / np.linalg.norm(mean)

    def stance_features(self, texts: list[str], system: ValueSystem,
                        emb: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The named stance features (n, L) of `valuelex.evaluate.stance` for texts (or their embeddings)."""
        emb = self._encode(texts) if emb is None else emb
        protos, neutral = self.prototypes(system)
        sims = {name: emb @ vectors.T for name, vectors in protos.items()}
        cues = np.array([stance.rejection_cue(t, stance.lexicon().rejection_cues) for t in texts])
        return stance.feature_columns(differences(*self.similarities(texts, system, emb)), sims, emb @ neutral, cues)

    def similarities(self, texts: list[str], system: ValueSystem,
                     emb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities (n, L) of texts (or of their embeddings `emb`) to the aligned and the
        conflict poles (NaN: no pole)."""
        aligned, conflict = self.poles(system)
        emb = self._encode(texts) if emb is None else emb
        return emb @ aligned.T, emb @ np.nan_to_num(conflict).T + np.where(np.isnan(conflict[:, 0]), np.nan, 0.0)

    def score_texts(self, texts: list[str], system: ValueSystem, emb: np.ndarray | None = None) -> np.ndarray:
        """Integer scores, shape (n, L), columns in `system.leaf_keys()` order (`emb`: the texts' embeddings)."""
        if not texts:
            return np.zeros((0, len(system.leaves())), dtype=int)
        part = self.calibration_for(system)
        if part is not None and "features" in part:
            columns = self.stance_features(texts, system, emb)
            return np.stack([stance.ordinal_scores(stance.design({f: columns[f][:, i] for f in part["features"]},
                                                                 part["features"]), part)
                             for i in range(len(system.leaves()))], axis=1)
        aligned_sim, conflict_sim = self.similarities(texts, system, emb)
        if part is None:
            return calibrate(aligned_sim, conflict_sim)
        return calibrated(differences(aligned_sim, conflict_sim), part, system.leaf_keys())

    def judge(self, completions: list[dict[str, Any]], system: ValueSystem,
              sink: Callable[[list[dict[str, Any]]], None]) -> None:
        """Judge completion rows; hands judgments rows to `sink` one batch at a time (the unit of resume)."""
        self.judge_many([JudgeTask(system, completions, sink)])

    def judge_many(self, tasks: list[JudgeTask]) -> None:
        """Judge several value systems' completions, encoding each completion once for all of them.

        Completions are encoded `ENCODE_ROWS` at a time (in first-seen order over the tasks; the
        encoder sorts a call's texts by length, so larger calls pad less), then handed on in blocks of
        `BATCH_ROWS`: each block is scored on every system that asked for any of its rows, and each
        system's judgments of the block go to its sink as one batch (the unit of resume). The encoder
        is most of the cost, so judging three systems costs about one.
        """
        texts: dict[Any, str | None] = {}
        for task in tasks:
            for row in task.completions:
                response = row.get("response")
                texts.setdefault(row["row_id"], None if is_blank(response)
                                 else completed_sentence(row.get("stem") or "", response or ""))
        rows_of = [{r["row_id"]: r for r in task.completions} for task in tasks]
        ids = list(texts)
        for chunk_start in range(0, len(ids), ENCODE_ROWS):
            chunk = ids[chunk_start:chunk_start + ENCODE_ROWS]
            usable = [i for i in chunk if texts[i] is not None]
            encoded = self._encode([texts[i] for i in usable]) if usable else np.zeros((0, 0), dtype=np.float32)
            position = {row_id: k for k, row_id in enumerate(usable)}
            for start in range(0, len(chunk), BATCH_ROWS):
                block = chunk[start:start + BATCH_ROWS]
                for task, rows in zip(tasks, rows_of, strict=True):
                    batch = [rows[i] for i in block if i in rows]
                    if batch:
                        task.sink(self._judgments(batch, task.system, texts, encoded, position))

    def _judgments(self, batch: list[dict[str, Any]], system: ValueSystem, texts: dict[Any, str | None],
                   encoded: np.ndarray, position: dict[Any, int]) -> list[dict[str, Any]]:
        keys, judge_key = system.leaf_keys(), self.key(system)
        usable = [r["row_id"] for r in batch if texts[r["row_id"]] is not None]
        scores = self.score_texts([texts[i] or "" for i in usable], system,
                                  encoded[[position[i] for i in usable]] if usable else None)
        by_row = dict(zip(usable, scores, strict=True))
        out = []
        for row in batch:
            if row["row_id"] in by_row:
                out.append(judgment(row, system, judge=self.name, judge_key=judge_key,
                                    scores=dict(zip(keys, (int(s) for s in by_row[row["row_id"]]), strict=True))))
            else:
                out.append(judgment(row, system, judge=self.name, judge_key=judge_key, scores=None,
                                    reason="empty response"))
        return out
