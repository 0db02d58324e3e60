"""Semantic KV reuse (precog.backend.reuse): exactness where it must be exact, matching, refusals, and HTTP.

Runs on the session engine. Reuse requests neither read nor fill its prefix cache, so the plain runs
they are compared with compute every token.
"""

from __future__ import annotations

import base64
import difflib
from collections.abc import Iterator

import httpx
import pytest
import torch

from precog.backend import Engine, Request, SamplingParams
from precog.backend.reuse import (
    KVReuse,
    LSHConfig,
    RecomputeSchedule,
    match_tokens,
    rerotate_keys,
    reuse_prefill,
)
from precog.store import KVBlob, Store
from tests.backend.conftest import serving, wait_for_idle

TEXT = (
    "The Riverside library opens at nine on weekdays and at ten on Saturday. Members may borrow up to "
    "twelve items for three weeks and renew them twice online. Late returns cost twenty cents a day per "
    "item. The reading room is on the second floor; the children's section is on the ground floor next "
    "to the cafe. In one sentence, when can I visit the reading room?"
)
EDITED = TEXT.replace("twelve items", "fifteen books").replace(
    "Late returns cost twenty cents a day per item.", "Returning items late is free of charge."
)


@pytest.fixture(scope="module")
def prompt(engine: Engine) -> list[int]:
    return list(engine.tokenizer.encode(TEXT))


@pytest.fixture(scope="module")
def reference(engine: Engine, prompt: list[int]) -> KVBlob:
    return engine.export_kv(prompt)


def first_logits(engine: Engine, ids: list[int], kv_reuse: KVReuse | None = None) -> torch.Tensor:
    """The logits of the first sampled token, through the engine's public submit/step interface."""
    seen: list[torch.Tensor] = []
    params = SamplingParams(temperature=0.0, max_tokens=1)
    engine.submit(
        Request(f"reuse-test-{len(ids)}-{id(seen)}", ids, params, on_logits=seen.append, kv_reuse=kv_reuse)
    )
    while engine.has_work():
        engine.step()
    return seen[0]


@pytest.mark.parametrize("preset", ["none", "layer0", "full"])
def test_reuse_of_an_identical_prompt_equals_full_compute(
    engine: Engine, prompt: list[int], reference: KVBlob, preset: str
) -> None:
    reuse = KVReuse(reference, RecomputeSchedule.preset(preset))  # type: ignore[arg-type]
    full = first_logits(engine, prompt)
    reused = first_logits(engine, prompt, reuse)
    torch.testing.assert_close(reused, full, atol=2e-4, rtol=1e-4)
    assert reuse.stats is not None and reuse.stats.matched == len(prompt) - 1
    direct = reuse_prefill(engine.model, prompt, KVReuse(reference, RecomputeSchedule.preset(preset)))  # type: ignore[arg-type]
    torch.testing.assert_close(direct.logits, full, atol=2e-4, rtol=1e-4)
    for layer in (0, 15, 29):
        torch.testing.assert_close(direct.keys[layer], reference.keys[layer], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(direct.values[layer], reference.values[layer], atol=1e-4, rtol=1e-4)
    wait_for_idle(engine)


def test_reuse_of_an_edited_prompt_stays_close_and_decodes_on(engine: Engine, reference: KVBlob) -> None:
    edited = list(engine.tokenizer.encode(EDITED))
    full = torch.log_softmax(first_logits(engine, edited), -1)
    for preset in ("none", "layer0", "full"):
        reuse = KVReuse(reference, RecomputeSchedule.preset(preset))  # type: ignore[arg-type]
        approx = torch.log_softmax(first_logits(engine, edited, reuse), -1)
        assert float((full.exp() * (full - approx)).sum()) < 0.1, preset  # first-token KL
        assert int(approx.argmax()) == int(full.argmax())
        stats = reuse.stats
        assert stats is not None and 0 < stats.matched < len(edited) - 1
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    done = engine.generate([edited], params, kv_reuse=[KVReuse(reference)])[0]
    assert len(done.token_ids) == 8 and done.cached_tokens == 0
    wait_for_idle(engine)


def test_rerotated_key_equals_a_key_computed_at_the_new_position(engine: Engine, prompt: list[int]) -> None:
    """Layer-0 keys depend only on the token and its position, so a question's keys computed behind a
    long prefix must equal its stand-alone keys turned by the prefix's length, and back."""
    question = list(engine.tokenizer.encode("Where is the reading room of the library?"))
    alone, behind = engine.export_kv(question), engine.export_kv(prompt + question)
    shift, positions = len(prompt), torch.arange(len(question))
    at_start = alone.keys[0].transpose(0, 1)  # [T, KVH, D]
    at_shift = behind.keys[0][:, shift:].transpose(0, 1)
    inv_freq = engine.spec.inv_freq
    torch.testing.assert_close(
        rerotate_keys(at_start, positions, positions + shift, inv_freq), at_shift, atol=2e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        rerotate_keys(at_shift, positions + shift, positions, inv_freq), at_start, atol=2e-5, rtol=1e-5
    )
    assert (at_start - at_shift).abs().max() > 0.1  # the shift really moved them


def _aligned(reference: list[int], ids: list[int]) -> dict[int, int]:
    """Position in ids -> position in reference, for tokens an exact diff keeps."""
    blocks = difflib.SequenceMatcher(a=reference, b=ids, autojunk=False).get_matching_blocks()
    return {b.b + k: b.a + k for b in blocks for k in range(b.size)}


@pytest.mark.parametrize("use_rope", [True, False])
def test_lsh_finds_identical_tokens_and_most_near_identical_ones(
    engine: Engine, prompt: list[int], use_rope: bool
) -> None:
    lsh = LSHConfig(use_rope=use_rope)
    same = match_tokens(engine.model, prompt, prompt, lsh)
    assert same.ref_index.tolist() == list(range(len(prompt)))
    edited = list(engine.tokenizer.encode(EDITED))
    near = match_tokens(engine.model, edited, prompt, lsh)
    truth = _aligned(prompt, edited)
    found = sum(1 for i, r in enumerate(near.ref_index.tolist()) if truth.get(i) == r)
    assert found >= 0.75 * len(truth)
    assert near.rate < 1.0  # the rewritten sentence does not all match
    unrelated = list(engine.tokenizer.encode("Photosynthesis turns light into chemical energy in plants."))
    assert match_tokens(engine.model, unrelated, prompt, lsh).rate < 0.5


def test_references_that_do_not_fit_are_refused(engine: Engine, prompt: list[int], reference: KVBlob) -> None:
    params = SamplingParams(max_tokens=1)
    other = KVBlob("another-model", reference.token_ids, reference.keys, reference.values, reference.rope)
    with pytest.raises(ValueError, match="for model 'another-model'"):
        engine.check_request(prompt, params, kv_reuse=KVReuse(other))
    short = KVBlob(reference.model, reference.token_ids, reference.keys[:3], reference.values[:3])
    with pytest.raises(ValueError, match="shape does not match"):
        engine.check_request(prompt, params, kv_reuse=KVReuse(short))
    narrow = KVBlob(
        reference.model,
        reference.token_ids,
        [k[:1] for k in reference.keys],
        [v[:1] for v in reference.values],
    )
    with pytest.raises(ValueError, match="shape does not match"):
        reuse_prefill(engine.model, prompt, KVReuse(narrow))
    with pytest.raises(ValueError, match="not both"):
        engine.check_request(prompt, params, kv_prefix=reference, kv_reuse=KVReuse(reference))
    with pytest.raises(ValueError, match="decay"):
        RecomputeSchedule(decay=0.0)


@pytest.fixture(scope="module")
def store_url(
    engine: Engine, reference: KVBlob, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    path = tmp_path_factory.mktemp("reuse") / "store"
    with Store.open(path, progress=False) as store:
        blob_id = store.put_blob(reference)
    with serving(engine, store_path=path) as url:
        yield url, blob_id


def test_reuse_over_http(engine: Engine, store_url: tuple[str, str], reference: KVBlob) -> None:
    url, blob_id = store_url
    body = {"model": engine.model_name, "prompt": TEXT, "max_tokens": 6, "temperature": 0, "ignore_eos": True}
    plain = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    reused = httpx.post(f"{url}/v1/completions", json={**body, "kv_reuse_blob_id": blob_id}, timeout=120)
    assert plain.status_code == 200 and reused.status_code == 200, reused.text
    assert reused.json()["choices"][0]["text"] == plain.json()["choices"][0]["text"]
    edited = httpx.post(
        f"{url}/v1/completions", json={**body, "prompt": EDITED, "kv_reuse_blob_id": blob_id}, timeout=120
    )
    assert edited.status_code == 200 and edited.json()["usage"]["completion_tokens"] == 6
    missing = httpx.post(f"{url}/v1/completions", json={**body, "kv_reuse_blob_id": "nope"}, timeout=30)
    assert missing.status_code == 400
    assert (missing.json()["error"]["param"], missing.json()["error"]["code"]) == (
        "kv_reuse_blob_id",
        "kv_blob_not_found",
    )
    foreign = KVBlob("another-model", reference.token_ids, reference.keys, reference.values).to_bytes()
    refused = httpx.post(
        f"{url}/v1/completions",
        json={**body, "kv_reuse_blob": base64.b64encode(foreign).decode()},
        timeout=30,
    )
    assert refused.status_code == 400
    assert (refused.json()["error"]["param"], refused.json()["error"]["code"]) == (
        "kv_reuse_blob",
        "invalid_kv_blob",
    )
    wait_for_idle(engine)
