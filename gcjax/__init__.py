"""gcjax: GAN compression by knowledge distillation in JAX/Flax."""

__version__ = "0.1.0"
