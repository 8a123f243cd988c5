"""The runtime: action ids, the journal, replay, and the controller of a running run."""
