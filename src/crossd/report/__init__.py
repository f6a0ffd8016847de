"""Reports a person would rather look at than read: results tables, plots, filter animations, the demo report."""
