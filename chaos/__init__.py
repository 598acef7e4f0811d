"""Chaos runs against a real logcap process, judged at a Loki test receiver.

``python -m chaos.run --scenario NAME`` (:mod:`chaos.run`) runs the scenarios of
:mod:`chaos.scenarios`: numbered lines written at a rate, a schedule of faults
(:mod:`chaos.schedule`: actor crashes through ``POST /chaos/crash``, kill -9 and restart, Loki
answering 503, refusing connections, answering late), then conservation judged
(:mod:`chaos.judge`) from what :mod:`chaos.receiver` recorded. The older scripts
(``sigkill_soak.py``, ``loki_outage.py``, ``rotation_storm.py``) run on their own.
"""
