"""Generate the small sample traces in this folder with simcluster's own code.

The samples are synthetic (no row comes from a real trace); they exist so that the docs, the
tests and ``simcluster trace stats`` have something to run on without downloading anything.

    python traces/make_samples.py [OUT_DIR]      # default: this folder

Deterministic: the same simcluster version writes the same bytes (a test checks it).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from simcluster.workload import (  # noqa: E402
    LognormalLength,
    PoissonArrivals,
    Workload,
    azure_conversation_like,
    write_trace,
)

SEED = 20240611
BLOCK_TOKENS = 512


def sample_azure(rng: np.random.Generator) -> Workload:
    """300 requests shaped like the Azure 2023 conversation trace (the built-in preset)."""
    return azure_conversation_like(300, None, rng)


def sample_mooncake(rng: np.random.Generator, n: int = 200) -> Workload:
    """Multi-turn conversations with shared system prompts, as Mooncake-style hash ids.

    A request either opens a conversation (behind one of three shared system prompts) or
    continues one: its prompt is the previous prompt, the previous answer and a new user turn, so
    it repeats the previous prompt's full blocks and adds new ones.
    """
    next_id = 0

    def fresh(k: int) -> list[int]:
        nonlocal next_id
        next_id += k
        return list(range(next_id - k, next_id))

    system_prompts = [fresh(k) for k in (2, 3, 6)]
    user_turn = LognormalLength(median=300, p90=2500)
    answer = LognormalLength(median=250, p90=600, max_tokens=2000)
    # Whole milliseconds, as in the published Mooncake traces.
    arrival = np.round(PoissonArrivals(2.0).times(rng, num_requests=n) * 1000) / 1000
    conversations: list[tuple[int, int, list[int]]] = []  # (prompt tokens, answer tokens, block ids)
    inputs, outputs, hash_ids = [], [], []
    for _ in range(n):
        new_turn = int(user_turn.sample(1, rng)[0])
        out = int(answer.sample(1, rng)[0])
        if not conversations or rng.random() < 0.4:
            prefix = system_prompts[int(rng.integers(len(system_prompts)))]
            tokens = len(prefix) * BLOCK_TOKENS + new_turn
            blocks = prefix + fresh(math.ceil(tokens / BLOCK_TOKENS) - len(prefix))
        else:
            k = int(rng.integers(len(conversations)))
            prev_tokens, prev_out, prev_blocks = conversations[k]
            tokens = prev_tokens + prev_out + new_turn
            kept = prev_blocks[: prev_tokens // BLOCK_TOKENS]  # the last, partial block changes
            blocks = kept + fresh(math.ceil(tokens / BLOCK_TOKENS) - len(kept))
            del conversations[k]
        conversations.append((tokens, out, blocks))
        inputs.append(tokens)
        outputs.append(out)
        hash_ids.append(np.array(blocks, dtype=np.int64))
    return Workload(arrival, np.array(inputs), np.array(outputs), hash_ids=hash_ids, source="make_samples.py")


def write_burstgpt_sample(rng: np.random.Generator, path: Path, n: int = 300) -> None:
    """A BurstGPT-style log: whole-second timestamps, two models, ~4% failed rows (0 response tokens)."""
    start = 5.0
    seconds = start + np.floor(PoissonArrivals(0.5).times(rng, num_requests=n))
    requests = LognormalLength(median=600, p90=2000).sample(n, rng)
    responses = LognormalLength(median=200, p90=600).sample(n, rng)
    responses[rng.random(n) < 0.04] = 0
    models = np.where(rng.random(n) < 0.7, "ChatGPT", "GPT-4")
    log_types = np.where(rng.random(n) < 0.8, "Conversation log", "API log")
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n")
        for t, m, q, r, lt in zip(seconds.tolist(), models, requests.tolist(), responses.tolist(), log_types):
            f.write(f"{int(t)},{m},{q},{r},{q + r},{lt}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else HERE
    streams = np.random.default_rng(SEED).spawn(3)
    write_trace(sample_azure(streams[0]), out / "sample_azure.csv", "azure")
    write_trace(sample_mooncake(streams[1]), out / "sample_mooncake.jsonl", "mooncake")
    write_burstgpt_sample(streams[2], out / "sample_burstgpt.csv")
    print(f"wrote sample_azure.csv, sample_mooncake.jsonl, sample_burstgpt.csv to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
