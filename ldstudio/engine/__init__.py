"""The diffusers engine: model loading, schedulers, previews, device choice; engine thread only.

Importing this package is cheap; torch and diffusers are imported by the modules that need them.
"""
