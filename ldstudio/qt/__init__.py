"""The desktop app's Qt layer: windows, panes, item models and the engine's client; GUI thread.

Imports core, PySide6 and qasync only; never torch, diffusers or ldstudio.engine (app.py wires
a backend in through a factory that runs on the engine thread).
"""
