"""The ``flare`` command line; the work itself lives in ``training``, ``export`` and ``runtime``."""
