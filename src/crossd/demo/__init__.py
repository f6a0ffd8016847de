"""``crossd demo``: the whole Cross-D idea end to end on real MRI, on a CPU (measured run time: README).

- :mod:`crossd.demo.data`: the tissue-classification sets built from nilearn's MNI152 template.
- :mod:`crossd.demo.run`: :func:`run_demo`, pretraining, transfer, evaluation and figures in one folder.
- :mod:`crossd.demo.report`: ``report.md`` and its plots from the run's summary.
"""
