"""The respondent grid: item x paraphrase x model x decoding config x sample, one row per request.

Paraphrase is a grid axis of its own (``prompts.paraphrases`` N, default 0): each item is asked in
its original wording (paraphrase 0) and its first N paraphrases, each wording M times per model and
decoding config, so the grid has (1 + N) times the rows and M (adaptive M too) counts samples per
wording. Rows carry their ``paraphrase`` index beside ``item_id`` (the item, whatever its wording).

A row's id is a hash of everything that determines its answer (study name and seed, stage, model
source, decoding config name and values, item text, sample index), so it is stable across runs and
machines: a rerun can tell finished work from new work, raising M only adds rows, and a changed seed
or config makes new rows instead of reusing old ones. Each row gets its own seed. The name of the
decoding config is part of the identity, so two configs of equal values stay two respondents.
Ids of this form are the run store's format 2 (`valuelex.store.migrate` converts format 1); a row
of paraphrase 0 has exactly the id and seed it had before paraphrases existed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from valuelex.engines.base import request_row
from valuelex.instruments import Item, Stage, select, variants
from valuelex.spec import DecodingConfig, ModelSpec, Study

REQUEST_COLUMNS = (
    "row_id", "study", "stage", "model", "training", "size_b", "family", "prompting", "config",
    "temperature", "top_p", "max_tokens", "item_id", "sample", "seed", "prompt", "paraphrase",
)


def _digest(payload: dict[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()


@lru_cache(maxsize=4096)
def _respondent_digest(study: str, seed: int, stage: str, model: str, source: str, prompting: str, config: str,
                       temperature: float, top_p: float, max_tokens: int | None) -> bytes:
    return _digest({
        "study": study, "seed": seed, "stage": stage, "model": model, "source": source, "prompting": prompting,
        "config": config, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
    })


def row_identity(
    study: Study, stage: Stage, model: ModelSpec, config: DecodingConfig, item_id: str, prompt: str, sample: int,
    paraphrase: int = 0,
) -> tuple[str, int]:
    """(row_id, seed) of one request (store format 2).

    row digest = sha256(respondent digest || item id, prompt, sample[, paraphrase]), where the
    respondent digest hashes study name and seed, stage, model name, source and prompting, and the
    decoding config's name and values (computed once per respondent, so the whole grid hashes fast);
    the paraphrase index is hashed only when it is not 0, so original wordings keep their ids. The
    row's seed hashes the row digest with the study seed once more.
    """
    respondent = _respondent_digest(study.name, study.seed, stage, model.name, model.source, model.prompting,
                                    config.name, config.temperature, config.top_p, config.max_tokens)
    key = f"{item_id}\x1f{prompt}\x1f{sample}" + (f"\x1f{paraphrase}" if paraphrase else "")
    digest = hashlib.sha256(respondent + key.encode()).digest()
    seed_digest = hashlib.sha256(digest + study.seed.to_bytes(8, "little")).digest()
    return digest.hex()[:24], int.from_bytes(seed_digest[:4], "little") & 0x7FFFFFFF


def items(study: Study, stage: Stage) -> tuple[Item, ...]:
    ids = study.prompts.elicitation if stage == "elicitation" else study.prompts.stems
    return select(stage, ids)


def wordings(study: Study, stage: Stage) -> Iterator[tuple[int, Item]]:
    """(paraphrase index, wording) of every item the study asks, each item's wordings together."""
    for item in items(study, stage):
        yield from variants(stage, item, study.prompts.paraphrases)


def requests(study: Study, stage: Stage, model: ModelSpec, samples: int | None = None) -> Iterator[dict[str, Any]]:
    """Every request row of one model in one stage, in a deterministic order.

    `samples` overrides the study's M (adaptive sampling asks for more rounds); sample k has the
    same row_id and seed whatever M is, so a larger M only adds rows.
    """
    for paraphrase, item in wordings(study, stage):
        prompt = item.framed(model.prompting)
        for config in study.decoding:
            for sample in range(samples or study.samples):
                row_id, seed = row_identity(study, stage, model, config, item.id, prompt, sample, paraphrase)
                yield request_row(
                    row_id, prompt, prompting=model.prompting, temperature=config.temperature,
                    top_p=config.top_p, max_tokens=token_limit(model, config), seed=seed,
                    study=study.name, stage=stage, model=model.name, training=model.training.value,
                    size_b=model.size_b, family=model.family, config=config.name, item_id=item.id, sample=sample,
                    paraphrase=paraphrase,
                )


def token_limit(model: ModelSpec, config: DecodingConfig) -> int:
    """The max_tokens a request sends: the model's ``options.max_tokens`` (thinking included) when set,
    else the decoding config's. Only the config's is part of the row identity."""
    return model.options.max_tokens or config.max_tokens


def row_ids(study: Study, stage: Stage, samples: int | None = None) -> set[str]:
    """The row_ids of a stage's whole current grid: what the run store serves (rows of an earlier
    version of the study -- another seed, config values or model source -- are not among them)."""
    found = set()
    for paraphrase, item in wordings(study, stage):
        for model in study.models:
            prompt = item.framed(model.prompting)
            for config in study.decoding:
                for sample in range(samples or study.samples):
                    found.add(row_identity(study, stage, model, config, item.id, prompt, sample, paraphrase)[0])
    return found


def count(study: Study, stage: Stage, model: ModelSpec | None = None, samples: int | None = None) -> int:
    """Rows of a stage for one model (or for all models when `model` is None)."""
    wording = 1 + study.prompts.paraphrases
    per_model = len(items(study, stage)) * wording * len(study.decoding) * (samples or study.samples)
    return per_model if model is not None else per_model * len(study.models)
