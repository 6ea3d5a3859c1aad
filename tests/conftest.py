"""Test-wide setup: 8 fake CPU devices, before anything imports jax."""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
