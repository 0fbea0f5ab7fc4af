"""Objects from probability maps: seeded watershed, planes stores, tuning and defaults."""
