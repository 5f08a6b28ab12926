"""Watch for non-finite losses and for a discriminator that wins outright, without per-step host syncs.

Each step updates a few tensors on the device. The loop reads them only at log
and checkpoint intervals, so a problem is reported with the step where it began.
"""

from __future__ import annotations

import torch

# D(x) above this and D(G(z)) below its complement count as an outright win for D.
D_WINS_THRESHOLD = 0.99


class DivergenceMonitor:
    """Device-side record of the first non-finite step and the longest run of steps that D won."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad_step = torch.tensor(-1, device=device)
        self.win_run = torch.tensor(0, device=device)
        self.longest_win_run = torch.tensor(0, device=device)
        self.win_run_end = torch.tensor(-1, device=device)

    def update(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        finite = torch.isfinite(stats["loss_d"]) & torch.isfinite(stats["loss_g"])
        first_bad = (self.first_bad_step < 0) & ~finite
        self.first_bad_step = torch.where(first_bad, torch.full_like(self.first_bad_step, step), self.first_bad_step)
        wins = (stats["d_real"] > D_WINS_THRESHOLD) & (stats["d_fake"] < 1 - D_WINS_THRESHOLD)
        self.win_run = (self.win_run + 1) * wins
        longer = self.win_run > self.longest_win_run
        self.longest_win_run = torch.where(longer, self.win_run, self.longest_win_run)
        self.win_run_end = torch.where(longer, torch.full_like(self.win_run_end, step), self.win_run_end)

    def read(self) -> tuple[int | None, int, int]:
        """Return (first non-finite step or None, longest D win run, step where it ended); syncs once."""
        values = torch.stack([self.first_bad_step, self.longest_win_run, self.win_run_end]).tolist()
        first_bad, longest, end = (int(v) for v in values)
        return (first_bad if first_bad >= 0 else None), longest, end

    def reset_win_record(self) -> None:
        self.longest_win_run.zero_()
        self.win_run_end.fill_(-1)
