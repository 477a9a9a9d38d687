"""The comparison experiment: train and score methods on a survey, then write a report directory.

`run_comparison(config, quick=False, resume=False) -> Path` runs it (``cuma compare`` on the command
line). Modules: ``run`` (the driver), ``methods_run`` (one method and seed), ``results`` (the typed
results, and the one reader and writer of results.json), ``tables`` (per-question CSVs), ``figures`` and
``plots`` (PNG figures, routing topology), ``report`` (results.json, results.csv, report.md,
report.html), ``report_dir`` (one report per directory), ``environment`` (versions, machine). The checks
before any model work live in `cuma.preflight`, the experiment's data in `cuma.data.experiment`, the
``--quick`` settings in `cuma.quick`.
"""

from cuma.lazy import lazy_exports

__all__ = ["run_comparison"]

# Lazy, so that building the `cuma` command line does not import torch.
__getattr__ = lazy_exports("cuma.compare", {"run_comparison": "cuma.compare.run"})
