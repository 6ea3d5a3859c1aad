"""Experiment configs: ``--config=configs/<name>.py[:preset,key=value]``.

Each file has ``get_config(arg)`` and a module-level ``PRESETS`` tuple;
``common`` holds the shared pieces and ``parse_arg``. Config files import
each other as modules (``from configs import pix2pix_omgd``). Library code
in ``gcjax/`` never imports this package.
"""
