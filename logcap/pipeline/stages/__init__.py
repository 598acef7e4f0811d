"""The pipeline stages: each a small typed config (a :class:`~logcap.config.section.Section`)
and a callable built from it that runs over a :class:`~logcap.pipeline.batch.LineBatch`.

Families: :mod:`.parse` (regex, json, logfmt), :mod:`.timestamp`, :mod:`.attach` (labels,
structured_metadata, output), :mod:`.edit` (truncate, replace), :mod:`.filter` (drop,
rate_limit). Every stage's failure on a line is counted in the batch and the line passes on
unchanged; only ``drop`` and ``rate_limit`` remove lines, counted with a reason.
"""
