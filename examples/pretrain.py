"""Pretrain a small GRU on synthetic targets generated on the fly.

The model reads a user's transactions (amount, MCC, time gaps) and the past-only
targets (expanding / trailing windows) as inputs, and predicts at every step the label
targets (windows that look ahead: next, forward, full) of ``configs/seed20.yaml``. The
targets are computed per batch by the DataLoader's collate function, never stored.

Run on the real Sberbank SDSJ 2016 sample (or synthetic data when it is absent)::

    python examples/pretrain.py                       # ~300 steps on CPU
    python examples/pretrain.py --steps 5 --users 40  # smoke run (CI)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from gpu_targets import load_config
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.io import read_transactions
from gpu_targets.torch import SequenceDataset, split_features_labels

REPO = Path(__file__).resolve().parents[1]
SDSJ = REPO.parent / "shared" / "data" / "sberbank_sdsj2016_transactions_partial.parquet"


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): amounts span 1..1e8, so targets are compared on this scale."""
    return torch.sign(x) * torch.log1p(x.abs())


class GRUModel(nn.Module):
    """Transactions + past-only targets -> label targets at every step."""

    def __init__(self, n_features: int, n_labels: int, hidden: int = 64, mcc_buckets: int = 10000):
        super().__init__()
        self.mcc = nn.Embedding(mcc_buckets + 1, 16)
        self.gru = nn.GRU(2 + 16 + n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_labels)

    def forward(self, batch: dict, features: list[int]) -> torch.Tensor:
        amount = signed_log(torch.nan_to_num(batch["amount"])).unsqueeze(-1)
        gaps = torch.diff(batch["time"], prepend=batch["time"][:, :1]).clamp(min=0)
        gaps = torch.log1p(gaps).float().unsqueeze(-1)
        mcc = self.mcc(batch["mcc"].clamp(min=-1) + 1)
        past = signed_log(batch["targets"][..., features])
        hidden, _ = self.gru(torch.cat([amount, gaps, mcc, past], dim=-1))
        return self.head(hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "seed20.yaml"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--users", type=int, default=None, help="use only the first N users")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the model (default 1: a GRU this small is fastest on one "
                             "thread, and the targets' engine keeps its own threads)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)  # as notebooks/02_pretraining.ipynb does

    config = load_config(args.config)
    if SDSJ.exists():
        frame, config = read_transactions(SDSJ), config.model_copy(update={"format": "sdsj2016"})
        source = "SDSJ 2016"
    else:
        frame, source = synthetic_transactions(600, (50, 800), seed=args.seed), "synthetic"
    dataset = SequenceDataset(frame, config, max_len=args.max_len)
    if args.users is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(args.users, len(dataset))))
    collate = (dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset).collate
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate,
                        num_workers=args.workers, drop_last=False,
                        multiprocessing_context="spawn" if args.workers else None)
    features, labels = split_features_labels(config)
    names = config.output_columns
    print(f"data: {source}, {len(dataset)} users; features: {len(features)} past-only targets; "
          f"labels: {[names[i] for i in labels]}")

    model = GRUModel(len(features), len(labels))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    step, users, load_s, losses = 0, 0, 0.0, []
    while step < args.steps:
        t0 = time.perf_counter()
        for batch in loader:
            load_s += time.perf_counter() - t0
            users += len(batch["user"])
            target = signed_log(batch["targets"][..., labels])
            mask = batch["mask"].unsqueeze(-1).expand_as(target)
            loss = ((model(batch, features) - target) ** 2)[mask].mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            step += 1
            if step == 1 or step % 25 == 0 or step == args.steps:
                print(f"step {step:4d}  loss {np.mean(losses[-25:]):8.4f}  loader {users / load_s:8.1f} users/s")
            if step == args.steps:
                break
            t0 = time.perf_counter()
    first, last = np.mean(losses[: max(1, len(losses) // 10)]), np.mean(losses[-max(1, len(losses) // 10):])
    print(f"loss {first:.4f} -> {last:.4f} over {step} steps")


if __name__ == "__main__":
    main()
