"""Reports a person would rather look at than read: results tables, plots, kernel figures and animations.

The demo's report is :mod:`crossd.demo.report`.
"""
