"""Where versions run: :class:`~.base.DeploymentTarget` and its implementations."""
