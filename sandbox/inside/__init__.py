"""Inside a running sandbox, seen from its host: the layer stack, the container layer's
changes, the container's namespaces, cgroups, mounts and processes, and checkpoints
of the container layer as OCI changeset layers. No Django; called by host tasks."""
