"""Helpers for the Advanced Machine Learning workbook: the notebooks stay thin, the logic lives here.

Modules: `environment` (packages and versions), `setup` (profile, seeding, device, paths), `data` (loaders and
downloads), `plotting` (style, `save_fig`), `results` (metrics file, checkpoints), `readme` (results table), `diffusion`,
`gpt`, `gpt_training`, `gpt_probing`, `vicreg`, `vicreg_training`, `vicreg_models`, `embeddings`,
`evaluation`.
"""
from .environment import require

require()  # one message naming every missing package, before torch & co. are imported

from .plotting import save_fig  # noqa: E402
from .results import record_metrics  # noqa: E402
from .setup import profile, start  # noqa: E402

__all__ = ["start", "profile", "save_fig", "record_metrics"]
