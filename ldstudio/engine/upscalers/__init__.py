"""Upscaler models (ESRGAN family) in the engine: networks, loading and tiled inference."""
