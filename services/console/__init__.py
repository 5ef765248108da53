"""The web console: one environment's steps, pipelines and executions in a browser."""
