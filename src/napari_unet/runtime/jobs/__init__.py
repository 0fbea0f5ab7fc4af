"""The jobs the docks and the command line run, one module each: its factory (parent side:
checks, arrays and outputs; returns an ``engine.Job`` not yet started) beside the generator the
worker runs (which imports the core, and through it Keras, inside its body only).

Nothing is imported here, so that the worker imports only the job it runs.
"""
