"""The Faust runtime (faust-streaming 0.15): the engine in a Faust agent, state in a Faust table,
at-least-once. Never named `faust`, which would shadow the library."""
