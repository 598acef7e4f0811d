"""The actor runtime, independent of what logcap's actors do: the actor base
(:mod:`~logcap.runtime.actor`), two-lane bounded mailboxes (:mod:`~logcap.runtime.mailbox`),
timers (:mod:`~logcap.runtime.timers`), stable names and handles
(:mod:`~logcap.runtime.directory`), the supervisor (:mod:`~logcap.runtime.supervisor`), its
vocabulary (:mod:`~logcap.runtime.childspec`) and its restart arithmetic
(:mod:`~logcap.runtime.restarts`)."""
