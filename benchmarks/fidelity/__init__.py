"""Fidelity harnesses: each method of the suite against its official code, from one state (see ``common``)."""
