"""How traffic reaches versions: :class:`~.base.TrafficRouter` and its implementations."""
