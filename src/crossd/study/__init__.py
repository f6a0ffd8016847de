"""Studies: many pretraining arms x seeds, each evaluated with the baselines on shared folds under several
protocols, summarised with paired tests (``crossd study CONFIG.toml``; :mod:`crossd.study.config` for the file).

``run_study(load_study("study.toml"), "runs/study")`` runs one; :func:`write_summary` remakes its tables from the
records on disk (an archive, say).
"""

from crossd.study.config import StudyConfig, load_study
from crossd.study.runner import run_study, write_summary

__all__ = ["StudyConfig", "load_study", "run_study", "write_summary"]
