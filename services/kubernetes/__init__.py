"""Running builds and executions as Jobs on a Kubernetes cluster."""
