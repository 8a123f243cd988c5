"""The SDK: what users write against (environments, tasks, runs, map, group, trace)."""
