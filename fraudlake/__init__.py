"""Shared core of fraudlake: the event contract, settings and CLI conventions."""
