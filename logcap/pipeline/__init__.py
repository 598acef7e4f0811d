"""Processing: the pipelines the shards run on each Entries (see docs/ARCHITECTURE.md,
"Processing").

* :mod:`~logcap.pipeline.stages`: the stage kinds, pure functions over a
  :class:`~logcap.pipeline.batch.LineBatch`, registered in :mod:`~logcap.pipeline.kinds`;
* :mod:`~logcap.pipeline.compiled`: a validated pipeline, compiled, and its runner;
* :mod:`~logcap.pipeline.routing`: which pipeline processes which entries;
* :mod:`~logcap.pipeline.decoding` and :mod:`~logcap.pipeline.loading`: the pipelines and
  routing files, checked; :mod:`~logcap.pipeline.builtins`: the shipped pipelines;
* :mod:`~logcap.pipeline.timeformats`: the log time formats of the timestamp stage.
"""
