"""ldstudio: a desktop studio for latent-diffusion image generation."""

__version__ = "0.1.0"
