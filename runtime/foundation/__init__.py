"""What every layer uses and nothing here climbs above: errors with a message for a person,
atomic writes, progress, path checks, fingerprints, journals and the command-line option types.

Training, export, benchmarks and the command line import these; they import only each other.
"""
