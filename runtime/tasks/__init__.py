"""One model class per task, all built on :class:`flare.runtime.tasks.model.BundleModel`.

Uses the core and I/O layers; the applications (:mod:`flare.runtime.apps`) use these.
"""
