"""Sample data and classical baselines; the pipeline in ``core`` never imports them."""
