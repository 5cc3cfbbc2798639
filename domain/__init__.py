"""The domain of mecodes in plain Python: names, layout, git, inventory, locks, the opencode and GitHub clients, and
the rules for chats, GC and memory. It imports neither Flask nor RQ; the API (sidecar/) and the jobs (worker/) both
build on it and never on each other."""
