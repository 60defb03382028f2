"""The Faust runtime (faust-streaming 0.15): the engine in a Faust agent, state in a Faust table,
at-least-once. Never named `faust`, which would shadow the library. app: the Faust app and its
agents; table_store: the table as the engine's store, per partition; topics: the topics it names
and creates; startup: the checks before Faust starts; fixes: the workarounds of Faust 0.15."""
