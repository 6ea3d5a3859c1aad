"""Test-wide setup: 8 fake CPU devices, before anything imports jax."""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import jax  # noqa: E402

# Classic threefry: XLA:CPU compiles it far faster (see config_base.base).
jax.config.update('jax_threefry_partitionable', False)
