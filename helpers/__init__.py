"""Helpers for the Advanced Machine Learning workbook: the notebooks stay thin, the logic lives here.

Modules: `setup` (profile, seeding, device, paths), `data` (loaders and downloads), `plotting`
(style, `save_fig`), `results` (metrics file, checkpoints), `readme` (results table), `diffusion`,
`gpt`, `gpt_training`, `gpt_probing`, `vicreg`, `vicreg_training`, `vicreg_models`, `embeddings`,
`evaluation`.
"""
from .plotting import save_fig
from .results import record_metrics
from .setup import profile, start

__all__ = ["start", "profile", "save_fig", "record_metrics"]
