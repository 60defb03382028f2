"""The web console: server-rendered pages for the people who own segments (sizes and their
history, members, a customer's explanation, a definition editor), served by the worker on its HTTP
port and by `segments console` over running workers' stores. One implementation (console_routes
over a Backend), two drivers. docs/console.md describes it."""
