"""mecodes watcher: follows opencode's event stream and tells what happens to chats (finished, failed, needs input,
interrupted) once each, as `worker.jobs.notify` jobs (`python -m watcher`). The rules are the domain's
(domain/chat_watch.py); it never builds on the sidecar or the worker, whose job it enqueues by name.
"""
