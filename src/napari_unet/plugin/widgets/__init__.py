"""Dock widgets. They read layers, hand configs and arrays to the engine, and show its events."""
