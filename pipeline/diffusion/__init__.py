"""Text-to-image: a tiny latent diffusion model trained on the tiny world (a standard diffusers
``StableDiffusionPipeline`` folder), and SLUG's text-encoder patch applied to such a pipeline."""
