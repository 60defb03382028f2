"""The Faust runtime (faust-streaming 0.15). Never named `faust`, which would shadow the library."""
