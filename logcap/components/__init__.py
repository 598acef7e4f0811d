"""The component registry: each kind of component declares its config section, how it is
started and what preflight checks (:mod:`~logcap.components.base`); the registry lists them
(:mod:`~logcap.components.registry`); the wiring gives them each other's handles
(:mod:`~logcap.components.wiring`). The kinds: :mod:`~logcap.components.state`,
:mod:`~logcap.components.sinks`, :mod:`~logcap.components.dispatch`,
:mod:`~logcap.components.sources`."""
